"""The installable tool: a wheel built from this tree, installed into a fresh venv with the locked
dependencies, gives a working `retraind` that carries the pipeline template (package data equal to
the checkout's files, byte for byte) and writes it with `retraind init`.

The build is isolated (pip fetches the setuptools pyproject.toml requires), from a copy of the
tree, so the checkout gets no build/ directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pygit2
import pytest

from daemon.commands.pipeline_template import PACKAGED, pipeline_files
from tests.conftest import ROOT

# Top-level entries the wheel does not need (and big ones); caches at any depth.
NOT_COPIED = {".venv", ".git", "data", "bench", "tests", "grafana", "prometheus", "build", "dist"}
CACHES = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", "*.egg-info", ".*_cache")


def _ignored(directory: str, names: list[str]) -> set[str]:
    top = {n for n in names if n in NOT_COPIED} if Path(directory) == ROOT else set()
    return top | CACHES(directory, names)


def _run(*argv: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_", "PYTHON"))}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_ignored, symlinks=True)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", work / "dist", source, cwd=work)
    (found,) = (work / "dist").glob("retraind-*.whl")
    return found


def test_the_wheel_carries_the_checkout_s_pipeline_byte_for_byte(wheel: Path) -> None:
    prefix = f"daemon/{PACKAGED}/"
    with zipfile.ZipFile(wheel) as z:
        carried = {n.removeprefix(prefix): z.read(n) for n in z.namelist() if n.startswith(prefix)}
        names = set(z.namelist())
    expected = pipeline_files(ROOT)
    assert sorted(carried) == expected
    for rel in expected:
        assert carried[rel] == (ROOT / rel).read_bytes(), rel
    own = {"daemon/templates/README.md", "daemon/templates/gitignore", "daemon/templates/report.html.j2"}
    assert own <= names
    assert not any(n.startswith(("scripts/", "tests/")) or "node_modules" in n for n in names)


def test_a_fresh_venv_with_the_wheel_runs_retraind_and_init(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip = (venv / "bin" / "pip", "install", "--quiet", "--no-compile", "--no-deps")
    _run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock", cwd=tmp_path)
    _run(*pip, wheel, cwd=tmp_path)
    _run(venv / "bin" / "pip", "check", cwd=tmp_path)  # the lock meets every dependency pyproject names

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    shown = _run(venv / "bin" / "retraind", "--version", cwd=tmp_path)
    assert shown.stdout.strip() == f"retraind {version}"

    done = _run(venv / "bin" / "retraind", "init", "mine", cwd=tmp_path)
    (line,) = done.stdout.splitlines()  # stdout is a pipe: one JSON line
    initialized = json.loads(line)
    assert initialized["template"] == "package"  # the wheel's copy, not this checkout
    repo = tmp_path / "mine"
    git = pygit2.Repository(str(repo))
    head = git.head.peel(pygit2.Commit)
    assert str(head.id) == initialized["commit"] and not git.status()
    for rel in pipeline_files(ROOT):
        assert (repo / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
        executable = os.stat(ROOT / rel).st_mode & 0o100 != 0
        assert head.tree[rel].filemode == (0o100755 if executable else 0o100644), rel
    assert f"retraind {version}" in (repo / "README.md").read_text()

    # The template of a version's report, from the wheel, compiles with the locked jinja2.
    load = "from daemon.core import report; report._template(); print(report.TEMPLATE)"
    template = Path(_run(venv / "bin" / "python", "-c", load, cwd=tmp_path).stdout.strip())
    assert template.is_relative_to(venv) and template.name == "report.html.j2"

    # The daemon's unit, from the wheel's copy, runs this venv's retraind (no checkout to point at).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_", "PYTHON"))}
    home = tmp_path / "home"
    installed = subprocess.run(
        [venv / "bin" / "retraind", "install-service", "--json"],
        cwd=tmp_path, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    unit = Path(json.loads(installed.stdout)["unit"])
    assert unit == home / ".config/systemd/user/retraind.service"
    text = unit.read_text()
    assert f"ExecStart={venv}/bin/retraind watch --json" in text and "WorkingDirectory=%h\n" in text
    assert "%h/retraind" not in text and "Documentation=" not in text
