"""pygit2 behind the `GitReader` seam: which commit, branch and dirtiness a run is built from."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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

    def _repo(self, path: Path) -> pygit2.Repository:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise ConfigError(f"{path} is not inside a git repository (run `git init` there)")
        return pygit2.Repository(found)

    def git_dir(self, path: Path) -> Path:
        return Path(self._repo(path).path)

    def ref_commit(self, path: Path, branch: str = "") -> str:
        """The commit of refs/heads/<branch>, or of HEAD when branch is empty."""
        try:
            repo = self._repo(path)
            if branch:
                return str(repo.lookup_reference(f"refs/heads/{branch}").target)
            return str(repo.head.target)
        except (pygit2.GitError, KeyError) as e:
            raise GitReadError(f"cannot resolve {branch or 'HEAD'} in {path}: {e}") from e

    def read(self, path: Path) -> GitInfo:
        try:
            repo = self._repo(path)
            if repo.head_is_unborn:
                raise ConfigError(f"{repo.workdir}: no commit yet; commit the project first")
            branch = "" if repo.head_is_detached else repo.head.shorthand
            flags = repo.status(untracked_files="no")
            dirty = any(f != pygit2.enums.FileStatus.CURRENT for f in flags.values())
            return GitInfo(str(repo.head.target), branch, dirty, Path(repo.workdir))
        except pygit2.GitError as e:
            raise GitReadError(f"cannot read git repository at {path}: {e}") from e

    @contextmanager
    def worktree(self, path: Path, commit: str, parent: Path) -> Iterator[Path]:
        """A temporary worktree of `commit` under parent, removed (and pruned) afterwards.

        A worktree needs a branch: a throwaway `retraind/reproduce-<commit>-<random>` points at the
        commit while the worktree lives; the repository's HEAD, index and files are not touched.
        """
        repo = self._repo(path)
        try:
            target = repo.revparse_single(commit).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as e:
            raise ConfigError(
                f"commit {commit} is not in the repository at {repo.workdir}: fetch it first"
            ) from e
        name = f"reproduce-{str(target.id)[:12]}-{secrets.token_hex(3)}"
        branch = repo.branches.local.create(f"retraind/{name}", target)
        where = parent / name
        try:
            repo.add_worktree(name, str(where), branch)
            yield where
        finally:
            shutil.rmtree(where, ignore_errors=True)
            if name in repo.list_worktrees():
                repo.lookup_worktree(name).prune(True)
            branch.delete()
