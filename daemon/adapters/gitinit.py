"""pygit2 for `retraind init`: a new repository with its files in one first commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from daemon.core.errors import InfrastructureError


@dataclass(frozen=True)
class FirstCommit:
    commit: str
    branch: str
    author: str  # "Name <email>"
    from_config: bool  # the author is the user's git identity (user.name, user.email)


def commit_new_repository(
    workdir: Path, files: Sequence[str], message: str, fallback: tuple[str, str]
) -> FirstCommit:
    """`git init` workdir, add exactly `files` (POSIX paths under it) and commit them.

    The author is the user's git identity when their configuration has one, else `fallback`
    (name, email). The branch is libgit2's default (init.defaultBranch when configured).
    """
    try:
        repo = pygit2.init_repository(str(workdir))
        for name in files:
            repo.index.add(name)
        repo.index.write()
        try:
            signature, from_config = repo.default_signature, True
        except (KeyError, pygit2.GitError):  # no user.name / user.email anywhere
            signature, from_config = pygit2.Signature(*fallback), False
        tree = repo.index.write_tree()
        oid = repo.create_commit("HEAD", signature, signature, message, tree, [])
        branch = repo.head.shorthand
    except pygit2.GitError as e:
        raise InfrastructureError(f"git could not create the repository in {workdir}: {e}") from e
    return FirstCommit(str(oid), branch, f"{signature.name} <{signature.email}>", from_config)


def enclosing_work_tree(path: Path) -> Path | None:
    """The work tree of the git repository path lies in (path itself need not exist yet), if any."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    found = pygit2.discover_repository(str(probe))
    if found is None:
        return None
    workdir = pygit2.Repository(found).workdir
    return Path(workdir) if workdir else None
