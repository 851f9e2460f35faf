"""The state directory, private to its owner: it, runs/ and the databases in it 0700 / 0600."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import ConfigError, InfrastructureError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
GROUP_OTHER = 0o077


@dataclass(frozen=True)
class Tightened:
    """A path whose mode let the group or others in, and was set private."""

    path: Path
    mode_was: int
    mode: int


def sqlite_path(uri: str) -> Path | None:
    """The file of a `sqlite:///` tracking URI; None for any other URI."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def secure_state(state_dir: Path, tracking_uri: str) -> list[Tightened]:
    """Create the state directory and runs/ 0700; tighten looser ones, and a looser embedded MLflow
    store to 0600 (it is created 0600, whole, by registry.prepare_sqlite_store).

    What else lands there (run directories, the manifest cache, files podman's containers write) is
    private through these directories whatever its own mode, so containers keep their usual modes:
    a rootful container runs as uid 10001 and must still read what it is given.
    """
    found = [_private_dir(state_dir), _private_dir(state_dir / "runs")]
    found.append(_private_file(state_dir / "journal.db", create=False))  # Journal.open creates it 0600
    store = sqlite_path(tracking_uri)
    if store is not None and store.parent == state_dir:
        found.append(_private_file(store, create=False))  # registry.prepare_sqlite_store creates it 0600
    return [t for t in found if t is not None]


def _tighten(path: Path, st: os.stat_result, private: int) -> Tightened | None:
    mode = stat.S_IMODE(st.st_mode)
    if not mode & GROUP_OTHER:
        return None
    os.chmod(path, private)
    return Tightened(path, mode, private)


def _private_dir(path: Path) -> Tightened | None:
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        st = path.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise FileExistsError
        return _tighten(path, st, PRIVATE_DIR)
    except (FileExistsError, NotADirectoryError) as e:
        raise ConfigError(
            f"state directory {path} is not a directory: move that file away, or pass --state-dir"
        ) from e
    except PermissionError as e:
        raise ConfigError(
            f"cannot make state directory {path} private to this user ({e.strerror}): "
            "pass a --state-dir of your own"
        ) from e
    except OSError as e:
        raise InfrastructureError(f"cannot create state directory {path}: {e}") from e


def _private_file(path: Path, *, create: bool) -> Tightened | None:
    try:
        if create:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        return _tighten(path, st, PRIVATE_FILE)
    except IsADirectoryError as e:
        raise ConfigError(f"{path} is a directory, not a database: move it away") from e
    except PermissionError as e:
        raise ConfigError(
            f"cannot make {path} private to this user ({e.strerror}): chown it to yourself"
        ) from e
    except OSError as e:
        raise InfrastructureError(f"cannot create {path}: {e}") from e
