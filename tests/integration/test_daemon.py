"""`retraind watch` acceptance: a real daemon process, a real git repository, rootless podman."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import time
from pathlib import Path

from daemon.adapters.manifest import build_manifest
from tests.conftest import ROOT
from tests.integration.daemon_harness import (
    RETRAIND,
    RUN_DEADLINE_S,
    Daemon,
    commit_file,
    commit_hanging_training,
)


def _records() -> list[bytes]:
    """The sample's CSV records as bytes (latin-1 round-trips every byte; records may span lines)."""
    text = (ROOT / "data/sample.csv").read_bytes().decode("latin-1")
    out = []
    for row in csv.reader(io.StringIO(text, newline="")):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(row)
        out.append(buffer.getvalue().encode("latin-1"))
    return out


HEADER, *ROWS = _records()


def drop(data: Path, name: str, rows: list[bytes] = ROWS) -> None:
    """Write a complete data file the way a careful producer does: temporary name, then rename."""
    (data / f".{name}.part").write_bytes(HEADER + b"".join(rows))
    (data / f".{name}.part").rename(data / name)


def causes(run) -> set[str]:  # type: ignore[no-untyped-def]
    return {source for source, _ in run.causes}


def test_a_thousand_files_within_two_seconds_start_exactly_one_run(daemon: Daemon) -> None:
    daemon.start()
    started = time.monotonic()
    for i in range(1000):
        (daemon.data / f"part-{i:04d}.csv").write_bytes(HEADER + b"".join(ROWS[i * 3 : i * 3 + 3]))
    assert time.monotonic() - started < 2
    runs = daemon.wait_idle(runs=1)  # idle with nothing pending: no other run can follow
    assert len(runs) == 1
    assert runs[0].status == "succeeded" and causes(runs[0]) == {"data"}


def test_a_commit_and_a_drop_in_one_quiet_window_make_one_run_with_both_causes(daemon: Daemon) -> None:
    daemon.start()
    commit = commit_file(daemon.repo, "NOTES.txt", "retrain please\n", "a change")
    drop(daemon.data, "drop.csv")
    (run,) = daemon.wait_idle(runs=1)
    assert causes(run) == {"commit", "data"} and run.commit == commit and run.status == "succeeded"


def test_three_events_during_a_run_give_exactly_one_follow_up_with_the_newest_inputs(daemon: Daemon) -> None:
    drop(daemon.data, "first.csv", ROWS[::2])  # every class in both halves
    daemon.start()
    daemon.wait_log(
        lambda e: e.get("event") == "stage_started" and e.get("stage") == "validate", RUN_DEADLINE_S
    )
    newest = commit_file(daemon.repo, "NOTES.txt", "one\n", "during the run")
    drop(daemon.data, "second.csv", ROWS[1::2])
    subprocess.run([RETRAIND, "trigger", "--state-dir", str(daemon.state)], check=True, capture_output=True)
    first, follow_up = daemon.wait_idle(runs=2)
    assert first.status == follow_up.status == "succeeded"
    assert {"commit", "data", "manual"} <= causes(follow_up)
    assert follow_up.commit == newest
    assert follow_up.data_sha256 == build_manifest(daemon.data, "*.csv").sha256


def test_a_slow_copy_starts_no_run_until_the_writer_stops(daemon: Daemon) -> None:
    daemon.start()
    target = daemon.data / "slow.csv"
    with target.open("wb") as out:
        out.write(HEADER)
        deadline = time.monotonic() + 5
        i = 0
        while time.monotonic() < deadline:
            out.write(b"".join(ROWS[i : i + 50]))
            out.flush()
            i += 50
            time.sleep(0.25)
        writer_done = time.time()
        assert not [e for e in daemon.lines if e.get("event") == "event_admitted"]
    (run,) = daemon.wait_idle(runs=1)
    assert run.started_at is not None and run.started_at >= writer_done


def test_kill_9_during_training_then_restart_recovers_and_runs_once_more(daemon: Daemon) -> None:
    drop(daemon.data, "drop.csv")
    daemon.start()  # reconcile at start: the data differ from the (absent) last run
    daemon.wait_log(lambda e: e.get("event") == "stage_started" and e.get("stage") == "train", RUN_DEADLINE_S)
    daemon.signal(signal.SIGKILL)
    assert daemon.proc is not None and daemon.proc.wait(10) == -9
    crashed = daemon.runs()[0]
    daemon.lines.clear()
    daemon.start()
    interrupted, retry = daemon.wait_idle(runs=2)  # retried once, not again
    assert (interrupted.run_id, interrupted.status) == (crashed.run_id, "interrupted")
    assert interrupted.failed_stage == "train"
    assert (retry.retry_of, retry.attempt, retry.status) == (crashed.run_id, 2, "succeeded")
    left = subprocess.run(
        ["podman", "ps", "-aq", f"--filter=label=io.retraind.run={crashed.run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{daemon.state}/mlflow.db"
    client = MlflowClient(uri, uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments, "attributes.status = 'RUNNING'") == []


def test_a_retry_killed_too_is_not_run_again_after_the_next_restart(daemon: Daemon) -> None:
    drop(daemon.data, "drop.csv")
    daemon.start()
    for _ in range(2):  # the first run, then its retry: each killed in the middle of a stage
        started = daemon.wait_log(lambda e: e.get("event") == "stage_started", RUN_DEADLINE_S)
        daemon.signal(signal.SIGKILL)
        assert daemon.proc is not None and daemon.proc.wait(30) == -9
        daemon.lines.clear()
        daemon.start()
    not_retried = daemon.wait_log(lambda e: e.get("event") == "run_not_retried", RUN_DEADLINE_S)
    assert not_retried["run_id"] == started["run_id"]
    first, retry = daemon.wait_idle(runs=2)  # start-up reconcile queued no fresh attempt 1
    assert (first.status, retry.status, retry.attempt, retry.retry_of) == (
        "interrupted", "interrupted", 2, first.run_id,
    )  # fmt: skip
    assert not [e for e in daemon.lines if e.get("event") == "event_admitted"]


def test_sigterm_during_a_stage_exits_0_within_15_s_and_records_cancelled(daemon: Daemon) -> None:
    commit_hanging_training(daemon.repo)
    drop(daemon.data, "drop.csv")
    daemon.start()
    started = daemon.wait_log(
        lambda e: e.get("event") == "stage_started" and e.get("stage") == "train", RUN_DEADLINE_S
    )
    daemon.wait_container(started["run_id"])  # the training container is up (and sleeps)
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc is not None and daemon.proc.wait(20) == 0
    assert time.monotonic() - sent < 15
    (run,) = daemon.runs()
    assert run.status == "cancelled" and run.failed_stage == "train"
    left = subprocess.run(
        ["podman", "ps", "-aq", f"--filter=label=io.retraind.run={run.run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""


def test_idle_daemon_reloads_on_sighup_and_stops_cleanly_on_sigterm(daemon: Daemon) -> None:
    daemon.start()
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(lambda e: e.get("event") == "config_reloaded", 30)
    assert daemon.stop() == 0
    assert daemon.runs() == []


def test_bad_drops_are_rejected_without_stopping_the_daemon_and_a_good_one_then_trains(
    daemon: Daemon,
) -> None:
    import os
    import urllib.request

    daemon.start()
    (daemon.data / "garbage.csv").write_bytes(os.urandom(64 * 1024))
    (rejected,) = daemon.wait_idle(runs=1)
    assert rejected.status == "gate_rejected" and rejected.failed_stage == "validate"
    assert "garbage.csv" in (rejected.error or "")
    (daemon.data / "garbage.csv").unlink()
    (daemon.data / "utf16.csv").write_bytes("sentiment,text\npositive,good\n".encode("utf-16"))
    second = daemon.wait_idle(runs=2)[-1]
    assert second.status == "gate_rejected" and "UTF-16" in (second.error or "")
    (daemon.data / "utf16.csv").unlink()
    drop(daemon.data, "good.csv")
    good = daemon.wait_idle(runs=3)[-1]
    assert good.status == "succeeded" and good.model_version == "1"  # bad drops never registered
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        metrics = r.read().decode()
    assert 'retraind_gate_failures_total{reason="binary"} 2.0' in metrics
    assert daemon.proc is not None and daemon.proc.poll() is None
