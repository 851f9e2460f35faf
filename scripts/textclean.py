"""Python port of scripts/textclean.js `cleanAndTokenize`: the cleaning a served model applies.

The model is fitted on the tokens the Node preprocessing wrote and serves raw text through this
port, so the two must agree exactly (golden vectors in scripts/golden/ are checked by Jest and pytest,
and a test sweeps every BMP code point through both). Semantics: `toLowerCase()`, strip everything
but letters and numbers (general category L* or N*) and JavaScript whitespace, split on runs of
that whitespace, drop the stop words. Both implementations read the character classes from
charclass.json, frozen at one Unicode version, so neither depends on its runtime's Unicode tables.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STOP_WORDS = frozenset({"a", "an", "the", "is", "in", "on", "at"})
CHARCLASS = Path(__file__).with_name("charclass.json")


def _class_body(ranges: list[list[int]]) -> str:
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.cache
def _table() -> dict[str, list[list[int]]]:
    table: dict[str, list[list[int]]] = json.loads(CHARCLASS.read_text(encoding="utf-8"))
    return table


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    table = _table()
    whitespace = _class_body(table["whitespace"])
    not_kept = re.compile(f"[^{_class_body(table['letters_numbers'])}{whitespace}]")
    return not_kept, re.compile(f"[{whitespace}]+")


@functools.cache
def _ascii_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The same two classes restricted to ASCII, from the same table: on ASCII text, lower() maps
    A-Z alone, so stripping once, before it, gives what the general patterns give (textclean.js's
    asciiTokens takes the same shortcut). A third of the cost of the general patterns."""
    table = _table()

    def within(c: int, ranges: list[list[int]]) -> bool:
        return any(a <= c <= b for a, b in ranges)

    def body(codes: Iterable[int]) -> str:
        return "".join(f"\\x{c:02x}" for c in codes)

    spaces = [c for c in range(128) if within(c, table["whitespace"])]
    dropped = [c for c in range(128) if c not in spaces and not within(c, table["letters_numbers"])]
    return re.compile(f"[{body(dropped)}]"), re.compile(f"[{body(spaces)}]+")


def clean_and_tokenize(text: str) -> list[str]:
    """Lowercase, strip non-alphanumerics, split on whitespace, drop stop words."""
    if not isinstance(text, str):
        raise TypeError("clean_and_tokenize expects a str")
    if text.isascii():
        dropped, spaces = _ascii_patterns()
        words = spaces.split(dropped.sub("", text).lower())
    else:
        not_kept, whitespace = _patterns()
        # Strip before lowercasing too, as textclean.js does: code points newer than charclass.json
        # never reach lower(), whose mappings for them depend on the runtime's Unicode version.
        words = whitespace.split(not_kept.sub("", not_kept.sub("", text).lower()))
    return [t for t in words if t and t not in STOP_WORDS]


def tokens_frame(frame: Any) -> Any:
    """Turn raw texts (a DataFrame with a `text` column, a Series or a list) into a `tokens` frame.

    This is the first step of the served pipeline; the TF-IDF step reads column `tokens`.
    """
    import pandas as pd

    texts: Iterable[Any] = frame["text"] if isinstance(frame, pd.DataFrame) else frame
    joined = [" ".join(clean_and_tokenize(t)) if isinstance(t, str) else "" for t in texts]
    return pd.DataFrame({"tokens": joined})
