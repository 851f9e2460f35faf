"""The Python port of cleanAndTokenize against the golden vectors Jest checks too."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import textclean  # noqa: E402

GOLDEN = json.loads((ROOT / "scripts/golden/textclean.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", GOLDEN, ids=[repr(c["text"])[:40] for c in GOLDEN])
def test_golden_vectors(case: dict[str, object]) -> None:
    assert textclean.clean_and_tokenize(case["text"]) == case["tokens"]  # type: ignore[arg-type]


def test_golden_vectors_cover_the_tricky_classes() -> None:
    texts = "".join(c["text"] for c in GOLDEN)
    for needle in ("\u00a0", "\u2028", "\ufeff", "\u3000", "\x85", "\u0301", "İ", "Σ", "_", "@", "#"):
        assert needle in texts


def test_tokens_frame_turns_raw_text_into_one_row_each() -> None:
    frame = pd.DataFrame({"text": ["The CAT!", "", None, "on at in"]})
    assert textclean.tokens_frame(frame)["tokens"].tolist() == ["cat", "", "", ""]
    assert textclean.tokens_frame(["Hello world"])["tokens"].tolist() == ["hello world"]


def test_non_text_is_refused() -> None:
    with pytest.raises(TypeError):
        textclean.clean_and_tokenize(b"bytes")  # type: ignore[arg-type]


def general(text: str) -> list[str]:
    """clean_and_tokenize by the general patterns alone, without the ASCII shortcut."""
    not_kept, whitespace = textclean._patterns()
    words = whitespace.split(not_kept.sub("", not_kept.sub("", text).lower()))
    return [t for t in words if t and t not in textclean.STOP_WORDS]


def test_the_ascii_shortcut_gives_what_the_general_patterns_give() -> None:
    ascii_chars = [chr(c) for c in range(128)]
    pairs = [a + b for a in ascii_chars for b in ascii_chars]  # every character next to every other
    rng = random.Random(15)
    words = [*textclean.STOP_WORDS, "The", "IN", "x"]
    texts = [
        "".join(rng.choice(ascii_chars + words) for _ in range(rng.randint(0, 24))) for _ in range(20_000)
    ]
    differ = [t for t in pairs + texts if textclean.clean_and_tokenize(t) != general(t)]
    assert differ == []
