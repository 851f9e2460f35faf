"""The object store: content-addressed, read-only copies of data files, hashed while copied.

A run never reads the live data directory. At admission every data file is copied once into
`<state_dir>/objects/<sha[:2]>/<sha[2:]>` (mode 0444), its SHA-256 computed from the very bytes
written; a file whose stat changes while it is copied is not admitted. The run then sees a
directory of hard links to those objects (`<run_dir>/data/<name>`), mounted read-only into every
stage, so the manifest, the validated bytes and the trained bytes are one thing by construction.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import InfrastructureError
from daemon.core.nospace import is_no_space, no_space_error

_BUFFER_BYTES = 1 << 18
_buffers = threading.local()
OBJECT_MODE = 0o444
SNAPSHOT_DIR_MODE = 0o555  # the container user must list the mount's root (its host parent is 0700)
UNSTABLE = ""  # what ingest returns for a file that changed while it was copied
UNREADABLE = "!"  # ... and for one this user may not read


def _view() -> memoryview:
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(_BUFFER_BYTES))
    return view


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def disk_error(e: OSError, where: Path) -> InfrastructureError:
    """An OSError of the store as the error a person can act on (ENOSPC says where to free space)."""
    if is_no_space(e):
        return no_space_error(OSError(e.errno, f"writing the data snapshot in {where}"), where)
    return InfrastructureError(f"cannot write the data snapshot in {where}: {e}")


@dataclass(frozen=True)
class ObjectStore:
    """sha256-named, read-only objects under one directory (the state directory's objects/)."""

    root: Path

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str, size: int) -> bool:
        """Whether the object exists with the size recorded (a crash mid-write leaves no object, and a
        short one would be caught here). Called once per data file on every no-change decision, so it
        joins strings rather than building a Path."""
        try:
            return os.stat(f"{self.root}/{sha256[:2]}/{sha256[2:]}").st_size == size
        except OSError:
            return False

    def ingest(self, source: str, expected: os.stat_result) -> str:
        """Copy source into the store while hashing it; its SHA-256, or UNSTABLE if it changed.

        One read: the hash is of the bytes written. The file is opened without blocking (a FIFO
        that slipped past the scan cannot hang us) and must still be the regular file the scan saw,
        with the same stat before and after the copy.
        """
        tmp_dir = self.root / "tmp"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # parents: the state directory's mode
            tmp_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise disk_error(e, self.root) from e
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            return UNREADABLE
        except FileNotFoundError:
            return UNSTABLE  # removed since the scan
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or not _same_file(before, expected):
                return UNSTABLE
            sha, copied, tmp = self._copy(fd, tmp_dir)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if copied != before.st_size or not _same_file(before, after):
            tmp.unlink(missing_ok=True)
            return UNSTABLE
        self._place(tmp, sha)
        return sha

    def _copy(self, fd: int, tmp_dir: Path) -> tuple[str, int, Path]:
        view, digest, copied = _view(), hashlib.sha256(), 0
        out_fd = -1
        tmp = tmp_dir / f"{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
        try:
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            while size := os.readv(fd, [view]):
                chunk = view[:size]
                digest.update(chunk)
                written = 0
                while written < size:
                    written += os.write(out_fd, chunk[written:])
                copied += size
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise disk_error(e, self.root) from e
        finally:
            if out_fd >= 0:
                os.close(out_fd)
        return digest.hexdigest(), copied, tmp

    def _place(self, tmp: Path, sha: str) -> None:
        target = self.path(sha)
        try:
            os.chmod(tmp, OBJECT_MODE)
            target.parent.mkdir(mode=0o700, exist_ok=True)
            if target.exists():  # the same bytes are already stored (another name, an earlier drop)
                tmp.unlink()
            else:
                os.replace(tmp, target)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise disk_error(e, self.root) from e

    def materialise(self, files: Iterable[tuple[str, str]], dest: Path) -> None:
        """A directory of (name, sha256) as hard links to the objects (copies where links fail)."""
        try:
            dest.mkdir(parents=True, exist_ok=False)
            for name, sha in files:
                source, target = self.path(sha), dest / name
                try:
                    os.link(source, target)
                except OSError as e:
                    if e.errno not in (errno.EMLINK, errno.EPERM, errno.EXDEV):
                        raise
                    shutil.copyfile(source, target)
                    os.chmod(target, OBJECT_MODE)
            os.chmod(dest, SNAPSHOT_DIR_MODE)
        except FileNotFoundError as e:
            raise InfrastructureError(f"the data snapshot lost an object: {e.filename}") from e
        except OSError as e:
            raise disk_error(e, dest) from e

    def all_objects(self) -> dict[str, int]:
        """Every stored object's sha256 and size on disk."""
        found: dict[str, int] = {}
        if not self.root.is_dir():
            return found
        for fan in os.scandir(self.root):
            if len(fan.name) != 2 or not fan.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(fan.path):
                with contextlib.suppress(OSError):
                    found[fan.name + entry.name] = entry.stat(follow_symlinks=False).st_size
        return found

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()


def object_shas(manifest_files: Iterable[Mapping[str, object]]) -> set[str]:
    """The objects a recorded manifest (`Manifest.to_json`) needs."""
    return {str(f["sha256"]) for f in manifest_files if "sha256" in f}
