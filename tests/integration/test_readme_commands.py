"""The README's command lines, as typed, so that it cannot drift from the code again.

Every indented command line of README.md (and every inline `retraind ...` span) is collected. Each
`retraind` one must parse with the real parser (a subcommand or flag it does not know fails here);
each other program it names must exist. Every `retraind` code line is then run through the real
entry point in a sandbox (its own HOME and XDG directories, an empty settings file, a tiny git
repository as the current directory), unless NOT_RUN says why not and which test runs it instead:
it must exit with a code the README documents for it, print no traceback, and write JSON lines only
(stdout is a pipe, so every command is in its JSON mode).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

from daemon import cli
from tests.conftest import ROOT, require_tool

README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
SYSTEM_TOOLS = ("systemctl", "journalctl", "sudo", "jq", "eval", "curl")

# The exit codes the README documents for each command run here (its exit-code table).
DOCUMENTED_EXITS = {
    "status": {0},
    "doctor": {0, 78},  # 78: doctor found a problem (the sandbox has no data directory)
    "trigger": {0, 5},  # 5: no daemon answers
    "models": {0},
    "promote": {0, 2},  # 2: no such version
    "rollback": {0, 2},  # 2: nothing to roll back to
    "gc": {0},
    "install-service": {0},
    "init": {0},
    "notify": {0, 78},  # 78: `notify test` with no target configured (the sandbox has none)
}
# retraind commands the README shows that are not run here, and where they are run as typed.
NOT_RUN = {
    "run": "the whole pipeline in podman (30 s to minutes): tests/integration/test_reproduce.py runs "
    "`retraind run --json` through the entry point; its refusals: tests/unit/test_local_input.py",
    "reproduce": "rebuilds a recorded run (minutes): tests/integration/test_reproduce.py runs "
    "`retraind reproduce RUN_ID` through the entry point",
    "serve": "serves until stopped: tests/integration/test_serve.py runs `retraind serve --json` as a "
    "process of its own and sends it requests, bad ones, and moves of the champion",
    "base": "writes or loads a base image archive of 130+ MB: tests/integration/test_base_image.py runs "
    "`retraind base export|import|verify` through the entry point, against a second podman store",
}
# Defects found by this test in code owned elsewhere; strict, so the entry must go once fixed.
KNOWN_DEFECTS: dict[str, str] = {}
# Other programs: checked to exist, not run here.
OTHERS = {
    "bash tools/setup.sh": "installs system packages as root; .ci/run runs the README's test line as typed",
    ".venv/bin/pytest": "the test suite itself (.ci/run)",
    ".venv/bin/python": "benchmarks (minutes each); each named bench/ script must exist",
    ".venv/bin/mlflow": "a long-running UI server",
    "tools/mlflow-server.sh": "tests/integration/test_mlflow_server_sh.py runs start-db, serve and url",
    "systemctl": "needs a systemd user session; the unit it starts is verified below",
    "journalctl": "needs journald and the running unit",
    "sudo": "root on the host",
    "jq": "reads journalctl's output",
    "eval": "wraps tools/mlflow-server.sh url",
    "curl": "a request to retraind serve; tests/integration/test_serve.py sends the same ones",
}


@dataclass(frozen=True)
class Shown:
    """One simple command of a README line (lines are split at `&&` and `|`)."""

    line: int
    argv: tuple[str, ...]
    inline: bool = False

    @property
    def is_retraind(self) -> bool:
        return self.argv[0] in ("retraind", ".venv/bin/retraind")

    @property
    def subcommand(self) -> str:
        words = self.argv[1:]
        return next((w for w in words if not w.startswith("-")), words[0] if words else "")

    @property
    def program(self) -> str:
        return " ".join(self.argv[:2]) if self.argv[0] == "bash" else self.argv[0]

    def __str__(self) -> str:
        return f"README.md:{self.line}: {shlex.join(self.argv)}"


def _is_command(first_word: str) -> bool:
    return first_word.startswith((".venv/bin/", "tools/")) or first_word in ("bash", *SYSTEM_TOOLS)


def _split(words: list[str]) -> list[list[str]]:
    commands: list[list[str]] = [[]]
    for w in words:
        if w in ("&&", "|", "||", ";"):
            commands.append([])
        else:
            commands[-1].append(w)
    # `VAR=value program ...`: the program is the command
    return [c[next(i for i, w in enumerate(c) if "=" not in w or w.startswith("-")) :] for c in commands if c]


def readme_commands(text: str) -> list[Shown]:
    """Indented code lines that start with a command (a `$ ` prompt allowed), and inline `retraind` spans."""
    shown: list[Shown] = []
    for number, raw in enumerate(text.splitlines(), 1):
        m = re.match(r"^ {4,}(?:\$ )?(\S.*)$", raw)
        if m is None or not _is_command(m[1].split()[0]):
            continue
        shown += [Shown(number, tuple(c)) for c in _split(shlex.split(m[1], comments=True))]
    for m in re.finditer(r"`([^`]+)`", text):
        span = " ".join(m[1].split())
        words = span.split()
        if words[0] == "retraind" or (words[0].startswith("MLFLOW_") and len(words) > 1):
            number = text.count("\n", 0, m.start()) + 1
            shown += [Shown(number, tuple(c), inline=True) for c in _split(shlex.split(span))]
    return shown


SHOWN = readme_commands(README.read_text(encoding="utf-8"))
RETRAIND = [s for s in SHOWN if s.is_retraind]
TO_RUN = [s for s in RETRAIND if not s.inline and s.subcommand not in NOT_RUN]


def test_the_readme_shows_the_commands_this_test_knows() -> None:
    """No stale entry, nothing unaccounted for: every retraind code line is run here or in NOT_RUN."""
    assert len(RETRAIND) >= 10
    code = {s.subcommand for s in RETRAIND if not s.inline}
    assert code <= set(DOCUMENTED_EXITS) | set(NOT_RUN), code - set(DOCUMENTED_EXITS) - set(NOT_RUN)
    assert set(NOT_RUN) <= {s.subcommand for s in RETRAIND}
    assert set(DOCUMENTED_EXITS) == {s.subcommand for s in TO_RUN}
    others = {s.program for s in SHOWN if not s.is_retraind}
    assert others == set(OTHERS), others ^ set(OTHERS)


@pytest.mark.parametrize("shown", RETRAIND, ids=str)
def test_every_retraind_line_parses(shown: Shown) -> None:
    """A subcommand or flag the parser does not know fails here (argparse exits 2).

    Prose may name a command without its argument (`retraind reproduce`); a code line may not.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.parser().parse_args(list(shown.argv[1:]))
        except SystemExit as e:
            named_only = shown.inline and "the following arguments are required" in err.getvalue()
            printed_version = (e.code, shown.argv[1:]) == (0, ("--version",))
            assert named_only or printed_version, f"{shown}\n{err.getvalue()}"


@pytest.mark.parametrize("shown", [s for s in SHOWN if not s.is_retraind], ids=str)
def test_every_other_program_the_readme_names_exists(shown: Shown) -> None:
    first = shown.argv[0]
    if first == "bash":
        assert (ROOT / shown.argv[1]).is_file(), shown
    elif first.startswith("tools/"):
        script = ROOT / first
        assert script.is_file() and os.access(script, os.X_OK), shown
        assert f"\n  {shown.argv[1]})" in script.read_text(), f"{shown}: no such subcommand"
    elif first.startswith(".venv/bin/"):
        assert (VENV_BIN / first.removeprefix(".venv/bin/")).exists(), shown
        if first == ".venv/bin/python":
            assert (ROOT / shown.argv[1]).is_file(), shown
    else:
        assert first in SYSTEM_TOOLS, shown


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A tiny committed repository as the current directory; HOME and XDG directories of its own."""
    root = tmp_path_factory.mktemp("readme")
    repo = root / "project"
    git = pygit2.init_repository(str(repo))
    (repo / "params.toml").write_text("[train]\nseed = 1\n")
    git.index.add("params.toml")
    git.index.write()
    sig = pygit2.Signature("retraind tests", "tests@localhost")
    git.create_commit("HEAD", sig, sig, "one", git.index.write_tree(), [])
    config = root / "empty.toml"
    config.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_", "XDG_"))}
    env.update(HOME=str(root / "home"), RETRAIND_CONFIG=str(config))
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):
        env[var] = str(root / "home" / sub)
    (root / "home").mkdir()
    return repo, env


@pytest.mark.parametrize(
    "shown",
    [
        pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[s.subcommand]))
        if s.subcommand in KNOWN_DEFECTS
        else s
        for s in TO_RUN
    ],
    ids=str,
)
def test_retraind_lines_run_as_typed(shown: Shown, sandbox: tuple[Path, dict[str, str]]) -> None:
    repo, env = sandbox
    argv = [str(VENV_BIN / "retraind"), *shown.argv[1:]]
    result = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode in DOCUMENTED_EXITS[shown.subcommand], f"{shown}\n{output[-3000:]}"
    assert "Traceback" not in output, f"{shown}\n{output[-3000:]}"
    for line in result.stdout.splitlines():
        assert isinstance(json.loads(line), dict | list), f"{shown}: not a JSON line: {line!r}"
    if shown.subcommand == "install-service":
        _check_installed_unit(Path(env["HOME"]), env)


def _check_installed_unit(home: Path, env: dict[str, str]) -> None:
    """What the README says it writes, pointing at this checkout, and valid for systemd."""
    unit = home / ".config/systemd/user/retraind.service"
    assert f"\nExecStart={VENV_BIN}/retraind watch --json\n" in unit.read_text()
    require_tool("systemd-analyze")
    runtime = home / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)],
        env={**env, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_the_check_catches_an_unknown_subcommand_or_flag() -> None:
    """The parse check above can fail: a README naming `retraind frobnicate` or `status --all` would."""
    text = "Try:\n\n    .venv/bin/retraind status --all  # no such flag\n\nor `retraind frobnicate --now`.\n"
    shown = readme_commands(text)
    assert [(s.line, s.argv, s.inline) for s in shown] == [
        (3, (".venv/bin/retraind", "status", "--all"), False),
        (5, ("retraind", "frobnicate", "--now"), True),
    ]
    for s in shown:
        with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as info:
            cli.parser().parse_args(list(s.argv[1:]))
        assert info.value.code == 2
