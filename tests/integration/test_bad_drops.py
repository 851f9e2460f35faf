"""Whatever a user might drop by mistake gets a clear reason and exit 3 or 78: never a traceback, never
a training, the champion untouched. Each drop is tried with `retraind run` as typed, against a state
directory whose champion was trained on the sample first."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND, commit_hanging_training
from tests.integration.test_daemon import HEADER, ROWS

pytestmark = pytest.mark.podman
MODEL = "nlp-sentiment-classifier"
GOOD = HEADER + b"".join(ROWS)


@dataclass
class Lab:
    tmp: Path
    repo: Path
    state: Path

    def run(self, data: Path, **settings: str) -> tuple[int, list[dict[str, Any]], str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        env.update({f"RETRAIND_{k.upper()}": v for k, v in settings.items()})
        argv = [RETRAIND, "run", "--json", "--repo", str(self.repo), "--data-dir", str(data)]
        done = subprocess.run(
            [*argv, "--state-dir", str(self.state)], capture_output=True, text=True, env=env, timeout=900
        )
        lines = [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON
        return done.returncode, lines, done.stdout + done.stderr

    def versions(self) -> list[str]:
        client = MlflowClient(tracking_uri=f"sqlite:///{self.state / 'mlflow.db'}")
        return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))

    def champion(self) -> str:
        client = MlflowClient(tracking_uri=f"sqlite:///{self.state / 'mlflow.db'}")
        return str(client.get_model_version_by_alias(MODEL, "champion").version)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, podman_ready: None) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("bad-drops")
    lab = Lab(tmp, committed_copy(tmp / "repo"), tmp / "state")
    good = tmp / "good"
    good.mkdir()
    (good / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    code, _, output = lab.run(good)
    assert code == 0, output[-3000:]
    assert lab.champion() == "1"
    yield lab


def _zip(data: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("sample.csv", GOOD)
    (data / "export.csv").write_bytes(buffer.getvalue())


def _utf16(data: Path) -> None:
    (data / "export.csv").write_bytes(GOOD.decode("latin-1").encode("utf-16"))


def _utf16_named(data: Path, name: str) -> None:
    (data / name).write_bytes(GOOD.decode("latin-1").encode("utf-16"))


def _many_tiny_files(data: Path) -> None:
    """2,000 files repeating one another: the reasons stay bounded and give a total."""
    for i in range(2000):
        (data / f"part-{i:04d}.csv").write_bytes(b"sentiment,text\npositive,the same text\n")


def _semicolons(data: Path) -> None:
    (data / "export.csv").write_bytes(GOOD.replace(b",", b";"))


def _fifo(data: Path) -> None:
    (data / "good.csv").write_bytes(GOOD)
    os.mkfifo(data / "pipe.csv")


def _loop(data: Path) -> None:
    (data / "good.csv").write_bytes(GOOD)
    (data / "a.csv").symlink_to(data / "b.csv")
    (data / "b.csv").symlink_to(data / "a.csv")


def _outside(data: Path) -> None:
    (data / "passwd.csv").symlink_to("/etc/passwd")


def _directory(data: Path) -> None:
    (data / "good.csv").write_bytes(GOOD)
    (data / "old.csv").mkdir()


def _unreadable(data: Path) -> None:
    (data / "good.csv").write_bytes(GOOD)
    (data / "secret.csv").write_bytes(GOOD)
    (data / "secret.csv").chmod(0)


Drop = Callable[[Path], None]
# (name, how to make it, settings, exit code, words the reason must contain)
CASES: list[tuple[str, Drop, dict[str, str], int, str]] = [
    ("xlsx_or_zip_named_csv", _zip, {}, 3, "ZIP archive"),
    ("gzip_named_csv", lambda d: (d / "x.csv").write_bytes(gzip.compress(GOOD)), {}, 3, "gzip-compressed"),
    ("utf16", _utf16, {}, 3, "UTF-16"),
    ("semicolons", _semicolons, {}, 3, "delimited by semicolons"),
    ("empty_file", lambda d: (d / "empty.csv").write_bytes(b""), {}, 3, "the file is empty"),
    ("named_pipe", _fifo, {}, 3, "named pipe"),
    ("symlink_loop", _loop, {}, 3, "symlink loop"),
    ("symlink_outside", _outside, {}, 3, "outside the data directory"),
    ("directory_named_csv", _directory, {}, 3, "a directory with a data file's name"),
    (
        "over_the_size_cap",
        lambda d: (d / "big.csv").write_bytes(GOOD),
        {"max_file_bytes": "1000"},
        3,
        "over the cap",
    ),
    (
        "many_tiny_files",
        _many_tiny_files,
        {},
        3,
        "and 1,994 more rows in 1,994 more files (1,999 files in all)",
    ),
    ("no_csv_files", lambda d: (d / "notes.txt").write_text("x"), {}, 78, "no data files matching"),
    (
        "control_characters_in_the_name",
        lambda d: _utf16_named(d, "ex\x1b[31mport\n.csv"),
        {},
        3,
        "ex\\u001b[31mport\\u000a.csv",
    ),
]
if os.geteuid() != 0:  # root reads anything; CI runs this as an unprivileged user
    CASES.append(("unreadable", _unreadable, {}, 3, "cannot be read by this user"))


@pytest.mark.parametrize(("name", "make", "settings", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_drop_is_refused_with_a_reason_and_changes_nothing(
    lab: Lab, name: str, make: Drop, settings: dict[str, str], code: int, words: str
) -> None:
    data = lab.tmp / "drops" / name
    data.mkdir(parents=True)
    make(data)
    before = lab.versions()
    exit_code, lines, output = lab.run(data, **settings)
    assert exit_code == code, output[-3000:]
    assert "Traceback" not in output
    ended = [e for e in lines if e.get("event") in ("run_finished", "run_refused")]
    assert ended and words in ended[-1]["error"], ended
    assert not any(c in ended[-1]["error"] for c in "\x1b\n\r"), ended  # names are escaped
    assert not any(e.get("event") == "stage_started" and e.get("stage") == "train" for e in lines)
    assert lab.versions() == before and lab.champion() == "1"


def test_a_missing_data_directory_or_a_file_in_its_place_is_a_configuration_error(lab: Lab) -> None:
    for data, words in (
        (lab.tmp / "nowhere", "does not exist"),
        (lab.repo / "params.toml", "not a directory"),
    ):
        exit_code, lines, output = lab.run(data)
        assert exit_code == 78 and "Traceback" not in output, output[-3000:]
        assert words in lines[-1]["error"], lines[-1]


def test_a_stage_past_its_time_limit_is_stopped_its_container_removed_and_its_log_kept(lab: Lab) -> None:
    """A training that hangs (a commit whose train.py sleeps) is stopped at stage_timeout_s: generous
    enough for the other stages on a slow machine, which take a second or two on the sample."""
    slow = committed_copy(lab.tmp / "slow-repo")
    commit_hanging_training(slow)
    data = lab.tmp / "drops" / "slow"
    data.mkdir(parents=True)
    (data / "half.csv").write_bytes(HEADER + b"".join(ROWS[::2]))
    exit_code, lines, output = replace(lab, repo=slow).run(data, stage_timeout_s="20")
    assert exit_code == 4 and "Traceback" not in output, output[-3000:]
    finished = next(e for e in reversed(lines) if e.get("event") == "run_finished")
    assert finished["failed_stage"] == "train" and "timed out after 20 s" in finished["error"], finished
    left = subprocess.run(
        ["podman", "ps", "-aq", f"--filter=label=io.retraind.run={finished['run_id']}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert left.stdout.strip() == ""
    log = lab.state / "runs" / finished["run_id"] / "train" / "train.log"
    assert "podman run" in log.read_text() and "timed out" in log.read_text()
    assert lab.versions() == ["1"]
