"""In-container parity check: the Python port of cleanAndTokenize (what the model serves with) must
give exactly the tokens the Node preprocessing wrote (what the model was fitted on), for every row.

Usage: python parity.py --input processed.jsonl --report parity.json [--examples 10]
--input - reads the rows from stdin: preprocess.js --parity feeds them as it writes them.
Exit 0: every row agrees; 1: mismatches (examples in the report); 2: unreadable input.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import textclean


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", type=Path, required=True, help="processed.jsonl, or - for stdin")
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--examples", type=int, default=10)
    args = p.parse_args(argv)
    started = time.monotonic()
    textclean.clean_and_tokenize("")  # compiles the patterns before the first row arrives
    rows = mismatches = 0
    examples: list[dict[str, object]] = []
    try:
        piped = str(args.input) == "-"
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8") if piped else None
        with stdin or args.input.open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                rows += 1
                python_tokens = " ".join(textclean.clean_and_tokenize(row["text"]))
                if python_tokens != row["tokens"]:
                    mismatches += 1
                    if len(examples) < args.examples:
                        examples.append(
                            {
                                "file": row["file"],
                                "line": row["line"],
                                "text": row["text"][:300],
                                "node": row["tokens"][:300],
                                "python": python_tokens[:300],
                            }
                        )
    except (OSError, ValueError, KeyError) as e:
        print(f"parity: cannot read {args.input}: {e}", file=sys.stderr)
        return 2
    report = {
        "rows": rows,
        "mismatches": mismatches,
        "examples": examples,
        "duration_s": round(time.monotonic() - started, 3),
    }
    args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("rows", "mismatches", "duration_s")}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
