"""Write scripts/charclass.json: the code point ranges cleanAndTokenize keeps, frozen at one Unicode
version so that the Node cleaner and its Python port agree whatever Node or Python runs them.

Letters and numbers: general category L* or N* in this Python's unicodedata.
Whitespace: what JavaScript's \\s matches (ECMA-262 WhiteSpace + LineTerminator).
Usage: python tools/gen-charclass.py   (run it only to move to a newer Unicode version on purpose)
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

JS_WHITESPACE = [
    0x09,
    0x0A,
    0x0B,
    0x0C,
    0x0D,
    0x20,
    0xA0,
    0x1680,
    *range(0x2000, 0x200B),
    0x2028,
    0x2029,
    0x202F,
    0x205F,
    0x3000,
    0xFEFF,
]


def ranges(codepoints: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for cp in codepoints:
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def main() -> None:
    kept = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in "LN"]
    table = {
        "unicode_version": unicodedata.unidata_version,
        "letters_numbers": ranges(kept),
        "whitespace": ranges(sorted(JS_WHITESPACE)),
    }
    target = Path(__file__).resolve().parent.parent / "scripts" / "charclass.json"
    target.write_text(json.dumps(table, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {target}: Unicode {table['unicode_version']}, {len(table['letters_numbers'])} ranges")


if __name__ == "__main__":
    main()
