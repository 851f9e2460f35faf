"""Node's cleanAndTokenize and the Python port agree on random Unicode text, not just the goldens."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require_tool

sys.path.insert(0, str(ROOT / "scripts"))
import textclean

NODE_BATCH = """
const { cleanAndTokenize } = require(process.argv[1]);
const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(texts.map(cleanAndTokenize)));
"""
ALPHABET = (
    "abcXYZ019 \t\n,.!?'@#_-/:;()\u00a0\u2028\u3000\ufeff\x85\x1c éÉüßİıΣσς"
    "привет漢字٣४\u0301\u200b\u200d😀👍🏽"
)


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(n)]
    # plus a sweep of every BMP code point, 64 to a text
    texts += [
        "".join(chr(c) for c in range(s, s + 64) if not 0xD800 <= c <= 0xDFFF) for s in range(0, 0x10000, 64)
    ]
    return texts


def test_python_port_matches_node_on_random_and_all_bmp_text(tmp_path: Path) -> None:
    require_tool("node")
    texts = random_texts(3000, seed=7)
    node = subprocess.run(
        ["node", "-e", NODE_BATCH, str(ROOT / "scripts/textclean.js")],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(node.stdout)
    mismatches = [
        (t, e, textclean.clean_and_tokenize(t))
        for t, e in zip(texts, expected, strict=True)
        if textclean.clean_and_tokenize(t) != e
    ]
    assert mismatches == []
