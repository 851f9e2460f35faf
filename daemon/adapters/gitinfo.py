"""pygit2 behind the `GitReader` seam: which commit, branch and dirtiness a run is built from."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2

from daemon.core.errors import ConfigError, GitReadError, InfrastructureError
from daemon.core.inputs import GitInfo

_BLOB_MODES = {pygit2.enums.FileMode.BLOB: 0o644, pygit2.enums.FileMode.BLOB_EXECUTABLE: 0o755}


def _write_tree(repo: pygit2.Repository, tree: pygit2.Tree, dest: Path, mtime: int) -> None:
    """The files of a tree as git stores them: contents, the executable bit, symlinks; submodules as
    empty directories (their commit is not this repository's). Modes are set, not masked by the
    umask, and every timestamp is the commit's, so the image (and podman's layer cache) built from
    an export is the same whoever exports it, whenever."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    for entry in tree:
        target = dest / str(entry.name)
        mode = entry.filemode
        if mode == pygit2.enums.FileMode.TREE:
            _write_tree(repo, repo[entry.id].peel(pygit2.Tree), target, mtime)
        elif mode == pygit2.enums.FileMode.LINK:
            os.symlink(repo[entry.id].peel(pygit2.Blob).data, target)
        elif mode in _BLOB_MODES:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _BLOB_MODES[mode])
            with os.fdopen(fd, "wb") as fh:
                fh.write(repo[entry.id].peel(pygit2.Blob).data)
                os.fchmod(fh.fileno(), _BLOB_MODES[mode])
        else:  # a submodule (gitlink)
            target.mkdir()
            os.chmod(target, 0o755)
        os.utime(target, (mtime, mtime), follow_symlinks=False)
    os.utime(dest, (mtime, mtime))


def _subject(commit: pygit2.Commit) -> str:
    """The message's first line, however the commit encodes it (pygit2 replaces what is not UTF-8)."""
    lines = commit.message.strip().splitlines()
    return lines[0][:200] if lines else ""


class Pygit2Reader:
    """The real GitReader (daemon/core/inputs.py)."""

    def _repo(self, path: Path) -> pygit2.Repository:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise ConfigError(f"{path} is not inside a git repository (run `git init` there)")
        return pygit2.Repository(found)

    def git_dir(self, path: Path) -> Path:
        return Path(self._repo(path).path)

    def ref_commit(self, path: Path, branch: str = "") -> str:
        """The commit of refs/heads/<branch>, or of HEAD when branch is empty."""
        repo = self._repo(path)
        if not branch and repo.head_is_unborn:
            raise ConfigError(f"{repo.workdir}: no commit yet; commit the project first")
        try:
            if branch:
                return str(repo.lookup_reference(f"refs/heads/{branch}").target)
            return str(repo.head.target)
        except (pygit2.GitError, KeyError) as e:
            raise GitReadError(f"cannot resolve {branch or 'HEAD'} in {path}: {e}") from e

    def read_branch(self, path: Path) -> str:
        """The checked-out branch's name ("" for a detached HEAD)."""
        try:
            repo = self._repo(path)
            return "" if repo.head_is_detached or repo.head_is_unborn else str(repo.head.shorthand)
        except pygit2.GitError as e:
            raise GitReadError(f"cannot read git repository at {path}: {e}") from e

    def read(self, path: Path) -> GitInfo:
        try:
            repo = self._repo(path)
            if repo.head_is_unborn:
                raise ConfigError(f"{repo.workdir}: no commit yet; commit the project first")
            branch = "" if repo.head_is_detached else repo.head.shorthand
            flags = repo.status(untracked_files="no")
            dirty = any(f != pygit2.enums.FileStatus.CURRENT for f in flags.values())
            head = repo.head.peel(pygit2.Commit)
            return GitInfo(str(head.id), branch, dirty, Path(repo.workdir), _subject(head))
        except pygit2.GitError as e:
            raise GitReadError(f"cannot read git repository at {path}: {e}") from e

    def export(self, path: Path, commit: str, dest: Path, branch: str = "") -> GitInfo:
        """Write `commit`'s tree to dest: a run builds exactly one commit, whatever the worktree holds."""
        repo = self._repo(path)
        target = self._commit(repo, commit)
        try:
            _write_tree(repo, target.tree, dest, target.commit_time)
        except OSError as e:
            raise InfrastructureError(f"cannot export commit {commit[:12]} to {dest}: {e}") from e
        return GitInfo(str(target.id), branch, False, dest, _subject(target))

    def _commit(self, repo: pygit2.Repository, commit: str) -> pygit2.Commit:
        try:
            found: pygit2.Commit = repo.revparse_single(commit).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as e:
            raise ConfigError(
                f"commit {commit} is not in the repository at {repo.workdir}: fetch it first"
            ) from e
        return found
