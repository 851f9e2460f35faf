"""The sealed inputs of a run, as values: the commit it builds (GitInfo) and the data snapshot it
reads (Manifest of DataFiles), and the content hash both are named by."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str  # "" for a detached HEAD
    dirty: bool
    workdir: Path  # the tree the run builds: an export of `commit`, or the live worktree (--worktree)
    subject: str = ""  # the commit message's first line (for people; no run reads it)


_BUFFER_BYTES = 1 << 18
_buffers = threading.local()  # each hashing thread's read buffer


class GitReader(Protocol):
    """What a run reads of the repository: the commit a branch names, the files of one commit."""

    def git_dir(self, path: Path) -> Path:
        """The repository's .git directory (the daemon watches its refs)."""
        ...

    def ref_commit(self, path: Path, branch: str = "") -> str:
        """The commit `branch` points at (HEAD's when "")."""
        ...

    def read_branch(self, path: Path) -> str: ...

    def read(self, path: Path) -> GitInfo:
        """The worktree as it is (`--worktree`): HEAD's commit, marked dirty if anything differs."""
        ...

    def export(self, path: Path, commit: str, dest: Path, branch: str = "") -> GitInfo:
        """The files of `commit` alone, written into dest: what a run builds from."""
        ...


@dataclass(frozen=True)
class DataFile:
    name: str  # relative to the data directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[DataFile, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (name, why): entries the gate must refuse
    unstable: tuple[str, ...] = ()  # names that changed while they were read: still being written

    @property
    def sha256(self) -> str:
        """Digest of the canonical JSON listing: names, sizes and content hashes (and refusals)."""
        listing: list[object] = [[f.name, f.size, f.sha256] for f in self.files]
        listing += [["refused", name, why] for name, why in self.refused]
        return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    def to_json(self) -> list[dict[str, str | int]]:
        """The files as a run records them, for `manifest_diff` to compare against later."""
        return [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files]


def file_sha256(path: Path) -> str:
    """hashlib.file_digest's loop, but into this thread's buffer: file_digest allocates and zeroes a
    new 256 KiB one per call, which costs about 12% of the CPU time on 100 KiB files."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(_BUFFER_BYTES))
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as fh:
        while size := fh.readinto(view):
            digest.update(view[:size])
    return digest.hexdigest()
