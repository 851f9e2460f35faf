"""The data manifest: which files a run reads and their SHA-256, and one digest over them all."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import ConfigError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataFile:
    name: str  # relative to the data directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[DataFile, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (name, why): entries the gate must refuse

    @property
    def sha256(self) -> str:
        """Digest of the canonical JSON listing: names, sizes and content hashes (and refusals)."""
        listing: list[object] = [[f.name, f.size, f.sha256] for f in self.files]
        listing += [["refused", name, why] for name, why in self.refused]
        return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def refusal(path: Path, root: Path, max_file_bytes: int) -> str | None:
    """Why this entry must not be read as data, or None. Checked before anything reads it."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            return f"a symlink to {target}, outside the data directory"
    if path.is_dir():
        return "a directory with a data file's name"
    if not path.is_file():
        return "not a regular file"
    size = path.stat().st_size
    if size > max_file_bytes:
        return f"{size:,} bytes, over the cap of {max_file_bytes:,} (max_file_bytes)"
    return None


def build_manifest(data_dir: Path, pattern: str, max_file_bytes: int = 2 * 1024**3) -> Manifest:
    """Hash every file matching pattern directly in data_dir, in name order; list what is refused."""
    if not data_dir.is_dir():
        raise ConfigError(
            f"data directory {data_dir} does not exist; fetch the corpus with "
            f"tools/fetch-corpus.sh {data_dir} or pass --data-dir"
        )
    root = data_dir.resolve()
    files, refused = [], []
    for p in sorted(p for p in data_dir.glob(pattern) if not p.name.startswith(".")):
        why = refusal(p, root, max_file_bytes)
        if why is not None:
            refused.append((p.name, why))
        else:
            files.append(DataFile(p.name, p.stat().st_size, file_sha256(p)))
    if not files and not refused:
        raise ConfigError(f"no data files matching {pattern!r} in {data_dir}")
    return Manifest(tuple(files), tuple(refused))
