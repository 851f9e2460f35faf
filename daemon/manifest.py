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

    @property
    def sha256(self) -> str:
        """Digest of the canonical JSON listing: names, sizes and content hashes."""
        listing = [[f.name, f.size, f.sha256] for f in self.files]
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


def build_manifest(data_dir: Path, pattern: str) -> Manifest:
    """Hash every file matching pattern directly in data_dir, in name order."""
    if not data_dir.is_dir():
        raise ConfigError(
            f"data directory {data_dir} does not exist; fetch the corpus with "
            f"tools/fetch-corpus.sh {data_dir} or pass --data-dir"
        )
    paths = sorted(p for p in data_dir.glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise ConfigError(f"no data files matching {pattern!r} in {data_dir}")
    return Manifest(tuple(DataFile(p.name, p.stat().st_size, file_sha256(p)) for p in paths))
