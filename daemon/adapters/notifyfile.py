"""Where notification targets come from: the notify file (TOML, readable by its owner only, since
it holds webhook URLs and tokens) and the RETRAIND_NOTIFY_* environment."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from daemon.core.config import Settings
from daemon.core.errors import ConfigError
from daemon.core.notify import Target, targets_from, targets_from_env


def notify_file(settings: Settings, environ: Mapping[str, str]) -> Path:
    """settings.notify_file, else $XDG_CONFIG_HOME/retraind/notify.toml."""
    if settings.notify_file is not None:
        return settings.notify_file
    base = environ.get("XDG_CONFIG_HOME", "")
    home = Path(environ.get("HOME", "~")).expanduser()
    return (Path(base) if os.path.isabs(base) else home / ".config") / "retraind" / "notify.toml"


def load_targets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Target]:
    """The file's [[targets]], then the environment's; a file group or others can read is refused
    (its secrets would already be out), as ssh refuses a private key."""
    environ = os.environ if environ is None else environ
    path = notify_file(settings, environ)
    found: list[Target] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        if settings.notify_file is not None:
            raise ConfigError(
                f"notify file {path} does not exist: create it (chmod 600), or unset notify_file"
            ) from None
        fd = -1
    except OSError as e:
        raise ConfigError(f"cannot read notify file {path}: {e.strerror or e}") from e
    if fd >= 0:
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"notify file {path} is not a regular file")
            if mode & 0o077:
                raise ConfigError(
                    f"notify file {path} is readable by others (mode {stat.S_IMODE(mode):04o}) and holds "
                    f"secrets: chmod 600 {path}, and rotate the URLs and tokens in it if others could read it"
                )
            try:
                document = tomllib.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"cannot read notify file {path}: {e}; fix the file (TOML, UTF-8)") from e
        found += targets_from(document, str(path))
    found += targets_from_env(environ)
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"notification target names must differ, got {', '.join(names)}")
    return found
