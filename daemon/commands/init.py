"""`retraind init DIR`: a pipeline repository of the user's own, from this repository's pipeline.

The template is the reference pipeline itself (daemon/commands/pipeline_template.py lists it): a
checkout, or an editable install, reads the checkout's files; a wheel carries a copy made when it
was built (setup.py). init writes a new directory next to DIR, commits it, then renames it into
place, so a refusal or a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.commands.common import command
from daemon.commands.pipeline_template import OWN_FILES, PACKAGED, git_mode, pipeline_files
from daemon.core.errors import EXIT_OK, ConfigError, InfrastructureError

PACKAGE = Path(__file__).resolve().parent.parent  # daemon/
VERSION_TOKEN = "{retraind_version}"  # in daemon/templates/README.md


@dataclass(frozen=True)
class Template:
    root: Path  # where the pipeline files are
    source: str  # "checkout" or "package"
    files: tuple[str, ...]


EXIT_CODES = """exit codes:
  0   the repository is written and committed
  5   the disk or git failed (nothing is left behind)
  78  DIR is not a new or empty directory, or this installation has no pipeline template"""


def add_parser(sub: Any) -> None:
    p = command(
        sub,
        "init",
        main,
        settings=False,
        exit_codes=EXIT_CODES,
        help="scaffold a pipeline repository of your own in DIR (new or empty) and commit it",
        description="Write retraind's reference pipeline (Containerfile, scripts/ with its Jest suite, "
        "params.toml, requirements.lock, a README) into DIR as a new git repository with one commit.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="the new repository: a new or empty directory")
    p.add_argument("--json", action="store_true", help="one JSON line even on a terminal")


def find_template(package: Path = PACKAGE) -> Template:
    """The checkout the package runs from, else the copy a wheel carries."""
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "Containerfile").is_file():
        root, source = checkout, "checkout"
    elif (package / PACKAGED).is_dir():
        root, source = package / PACKAGED, "package"
    else:
        raise ConfigError(f"no pipeline template: neither a checkout at {checkout} nor {package / PACKAGED}")
    try:
        return Template(root, source, tuple(pipeline_files(root)))
    except FileNotFoundError as e:
        raise ConfigError(f"the pipeline template is incomplete: {e}; reinstall retraind") from e


def check_target(target: Path) -> None:
    """DIR must be new or an empty directory: init never mixes its files with anything."""
    if target.is_dir():
        entries = sorted(p.name for p in target.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            counted = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
            raise ConfigError(
                f"{target} is not empty ({counted}: {shown}); retraind init writes a new repository: "
                "name a new or empty directory"
            )
    elif target.exists():
        raise ConfigError(f"{target} exists and is not a directory; name a new or empty directory")


def write_files(template: Template, dest: Path) -> list[str]:
    """The pipeline files and init's own ones under dest, with git's modes (0644, or 0755 when
    executable); returns every path written, sorted."""
    copies = {rel: template.root / rel for rel in template.files}
    copies.update({target: PACKAGE / "templates" / name for name, target in OWN_FILES.items()})
    for rel, source in copies.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = source.read_bytes()
        if rel == OWN_FILES["README.md"]:
            data = data.replace(VERSION_TOKEN.encode(), __version__.encode())
        path.write_bytes(data)
        path.chmod(git_mode(source))
    return sorted(copies)


def next_steps(target: Path) -> list[str]:
    shown = _retraind_command()
    flags = f"--repo {shlex.quote(str(target))} --data-dir DATA"
    return [
        f"{shown} run {flags}   # DATA: a directory of CSV files (columns sentiment,text): a data drop",
        f"{shown} watch {flags}   # the daemon: a run on every commit and every data drop",
        f"{shown} install-service   # the daemon as a systemd user service, once "
        f'~/.config/retraind/config.toml has repo = "{target}" and data_dir',
    ]


def _retraind_command() -> str:
    """`retraind` when that is what PATH finds, else the console script's full path."""
    script = Path(sys.executable).parent / "retraind"
    found = shutil.which("retraind")
    if not script.exists() or (found is not None and Path(found).resolve() == script.resolve()):
        return "retraind"
    return str(script)


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.gitinit import commit_new_repository, enclosing_work_tree

    target = args.dir.expanduser().resolve()
    check_target(target)
    template = find_template()
    outer = enclosing_work_tree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.retraind-init-{os.getpid()}"
    try:
        staging.mkdir()
        files = write_files(template, staging)
        fallback = ("retraind init", f"{getpass.getuser()}@{socket.gethostname()}")
        message = f"retraind init: the reference pipeline of retraind {__version__}"
        first = commit_new_repository(staging, files, message, fallback)
        try:
            staging.replace(target)  # an empty target directory is replaced; a non-empty one refused
        except OSError as e:
            raise ConfigError(f"cannot move the new repository into {target}: {e.strerror}") from e
    except OSError as e:
        raise InfrastructureError(f"cannot write the new repository next to {target}: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fields: dict[str, Any] = {
        "event": "repository_initialized",
        "dir": str(target),
        "commit": first.commit,
        "branch": first.branch,
        "author": first.author,
        "author_from_git_config": first.from_config,
        "files": files,
        "template": template.source,
        "next": next_steps(target),
    }
    if outer is not None:
        fields["inside_work_tree"] = str(outer)
    print(json.dumps(fields) if json_lines else render(fields))
    return EXIT_OK


def render(fields: dict[str, Any]) -> str:
    lines = [
        f"initialized {fields['dir']}: {len(fields['files'])} files, commit {fields['commit'][:12]} "
        f"on {fields['branch']} by {fields['author']}"
    ]
    if not fields["author_from_git_config"]:
        lines.append("  (no user.name/user.email in your git config: set them to commit as yourself)")
    if "inside_work_tree" in fields:
        lines.append(
            f"  note: inside the git work tree {fields['inside_work_tree']}, which sees it as untracked"
        )
    lines.append("next:")
    lines += [f"  {step}" for step in fields["next"]]
    return "\n".join(lines)
