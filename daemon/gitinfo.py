"""pygit2 behind the `GitReader` seam: which commit, branch and dirtiness a run is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

from daemon.errors import ConfigError, GitReadError


@dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str  # "" for a detached HEAD
    dirty: bool
    workdir: Path


class Pygit2Reader:
    """The real `GitReader`."""

    def read(self, path: Path) -> GitInfo:
        try:
            found = pygit2.discover_repository(str(path))
            if found is None:
                raise ConfigError(f"{path} is not inside a git repository (run `git init` there)")
            repo = pygit2.Repository(found)
            if repo.head_is_unborn:
                raise ConfigError(f"{repo.workdir}: no commit yet; commit the project first")
            branch = "" if repo.head_is_detached else repo.head.shorthand
            flags = repo.status(untracked_files="no")
            dirty = any(f != pygit2.enums.FileStatus.CURRENT for f in flags.values())
            return GitInfo(str(repo.head.target), branch, dirty, Path(repo.workdir))
        except pygit2.GitError as e:
            raise GitReadError(f"cannot read git repository at {path}: {e}") from e
