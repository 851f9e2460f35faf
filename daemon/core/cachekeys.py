"""Stage cache keys: one SHA-256 over exactly the inputs a stage reads, and what a build copies.

Pure: callers pass in the hashes, IDs and parameters; nothing here runs podman or reads the data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import dockerfile

KEY_VERSION = 1  # bump when what a key covers changes, so that older entries stop matching


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    """The digest of the stage's name and its inputs as canonical JSON (sorted keys, no spaces)."""
    payload = {"stage": stage, "key_version": KEY_VERSION, "inputs": inputs}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def copied_sources(containerfile_text: str) -> list[str]:
    """The build-context paths the Containerfile's COPY and ADD instructions read, in order.

    `COPY --from=stage` reads another stage, not the context, and is left out; so are ADD's URLs,
    which the key records as given (the remote content is not hashed: avoid ADD of URLs).
    """
    try:
        commands = dockerfile.parse_string(containerfile_text)
    except dockerfile.GoParseError as e:
        raise ValueError(f"cannot parse the Containerfile: {e}") from e
    sources: list[str] = []
    for command in commands:
        if command.cmd.upper() not in ("COPY", "ADD"):
            continue
        if any(flag.startswith("--from") for flag in command.flags):
            continue
        sources.extend(command.value[:-1])  # the last value is the destination
    return sources


def ignore_patterns(lines: Iterable[str]) -> list[str]:
    """.containerignore lines as anchored gitignore patterns: ignore files match from the root."""
    patterns = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, body = (line.startswith("!"), line.lstrip("!").strip())
        body = body.removeprefix("./").lstrip("/")
        patterns.append(("!" if negate else "") + "/" + body)
    return patterns
