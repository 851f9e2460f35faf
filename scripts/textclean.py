"""Python port of scripts/textclean.js `cleanAndTokenize`: the cleaning a served model applies.

The model is fitted on the tokens the Node preprocessing wrote and serves raw text through this
port, so the two must agree exactly (golden vectors in data/golden/ are checked by Jest and pytest,
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
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    table = json.loads(CHARCLASS.read_text(encoding="utf-8"))
    whitespace = _class_body(table["whitespace"])
    not_kept = re.compile(f"[^{_class_body(table['letters_numbers'])}{whitespace}]")
    return not_kept, re.compile(f"[{whitespace}]+")


def clean_and_tokenize(text: str) -> list[str]:
    """Lowercase, strip non-alphanumerics, split on whitespace, drop stop words."""
    if not isinstance(text, str):
        raise TypeError("clean_and_tokenize expects a str")
    not_kept, whitespace = _patterns()
    # Strip before lowercasing too, as textclean.js does: code points newer than charclass.json
    # never reach lower(), whose mappings for them depend on the runtime's Unicode version.
    stripped = not_kept.sub("", not_kept.sub("", text).lower())
    return [t for t in whitespace.split(stripped) if t and t not in STOP_WORDS]


def tokens_frame(frame: Any) -> Any:
    """Turn raw texts (a DataFrame with a `text` column, a Series or a list) into a `tokens` frame.

    This is the first step of the served pipeline; the TF-IDF step reads column `tokens`.
    """
    import pandas as pd

    texts: Iterable[Any] = frame["text"] if isinstance(frame, pd.DataFrame) else frame
    joined = [" ".join(clean_and_tokenize(t)) if isinstance(t, str) else "" for t in texts]
    return pd.DataFrame({"tokens": joined})
