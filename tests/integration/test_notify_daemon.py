"""Notifications from real runs: a `retraind watch` daemon and `retraind run` as typed, rootless podman,
a webhook receiver on 127.0.0.1 that is down, slow, then up; and the webhook URL (a secret) nowhere."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from daemon.state.journal import Journal
from daemon.state.notifications import Notifications
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import Daemon, run_cli
from tests.integration.test_daemon import ROWS, drop
from tests.receiver import Receiver

SECRET = "T0KEN-8f3a9c2e71d54b06"  # the part of a webhook URL that is a credential


def waiting(state: Path) -> int:
    journal = Journal.open(state / "journal.db")
    try:
        return Notifications(journal).backlog().waiting
    finally:
        journal.close()


def wait_until(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout} s: {check}")


def mlflow_values(state: Path) -> str:
    """Every param and tag of every MLflow run and registered version, as one text."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{state / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    texts = []
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        texts += [*run.data.params.values(), *run.data.tags.values()]
    for mv in client.search_model_versions():
        texts += [*mv.tags.values(), mv.description or ""]
    return "\n".join(texts)


def test_a_rejected_drop_then_a_new_champion_each_notify_once_and_a_slow_receiver_delays_no_run(
    tmp_path: Path, podman_ready: None, receiver: Receiver
) -> None:
    hook = f"{receiver.url}/hook/{SECRET}"
    repo = committed_copy(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    env = {
        "RETRAIND_NOTIFY_WEBHOOK_URL": hook,
        "RETRAIND_PROMOTION_TOLERANCE": "1.0",  # any retrain becomes champion: the second has a delta
        "RETRAIND_NOTIFY_TIMEOUT_S": "300",  # a held request stays held
    }
    daemon = Daemon(repo, tmp_path / "data", tmp_path / "state", tmp_path, **env)
    receiver.stop()  # down for the first run
    try:
        daemon.start()
        drop(daemon.data, "good.csv", ROWS[::2])
        (first,) = daemon.wait_idle(runs=1)
        assert first.status == "succeeded" and first.model_version == "1"
        # The receiver is down: the notification waits in the journal, visible in status and /metrics.
        status = wait_until(
            lambda: (
                (s := run_cli("status", "--json", "--state-dir", str(daemon.state))[1][0])["notifications"][
                    "last_error"
                ]
                and s
            )
        )
        assert status["notifications"]["waiting"] == 1
        assert "ConnectionError" in status["notifications"]["last_error"]
        assert "[redacted]" in status["notifications"]["last_error"]  # the URL's path was in the error
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5) as r:
            assert "retraind_notification_backlog 1.0" in r.read().decode()
        receiver.start()
        (champion,) = receiver.wait_for(1)
        assert champion.path == f"/hook/{SECRET}" and champion.json["event"] == "new_champion"
        assert champion.json["champion_f1"] is None and champion.json["model_version"] == "1"

        # A rejected drop, and a receiver that holds every request: the next run must not wait for it.
        receiver.hold.clear()
        (daemon.data / "garbage.csv").write_bytes(os.urandom(64 * 1024))
        second = daemon.wait_idle(runs=2)[-1]
        assert second.status == "gate_rejected"
        wait_until(lambda: receiver.waiting == 1)  # the courier is stuck in the request
        (daemon.data / "garbage.csv").unlink()
        drop(daemon.data, "more.csv", ROWS[1::2])
        third = daemon.wait_idle(runs=3)[-1]
        assert third.status == "succeeded" and third.model_version == "2" and third.champion == 1
        assert receiver.waiting == 1 and len(receiver.received) == 1  # still held: the run did not wait
        receiver.hold.set()
        received = receiver.wait_for(3)
        wait_until(lambda: waiting(daemon.state) == 0)

        # SIGHUP reloads the notify file too: a target added there hears of the next rejected drop.
        notify = tmp_path / "notify.toml"
        notify.write_text(
            f'[[targets]]\nname = "lab"\nkind = "webhook"\nurl = "{receiver.url}/lab/{SECRET}"\n'
        )
        notify.chmod(0o600)
        (tmp_path / "retraind.toml").write_text(f'notify_file = "{notify}"\n')  # the daemon's RETRAIND_CONFIG
        since = len(daemon.lines)
        daemon.signal(signal.SIGHUP)
        daemon.wait_log(lambda e: e.get("event") == "config_reloaded", 60, since)
        (daemon.data / "garbage.csv").write_bytes(os.urandom(64 * 1024))
        assert daemon.wait_idle(runs=4)[-1].status == "gate_rejected"
        later = receiver.wait_for(5)[3:]
        assert sorted(r.path.split("/")[1] for r in later) == ["hook", "lab"]
        assert {r.json["event"] for r in later} == {"gate_rejected"}
    finally:
        daemon.stop()
    assert len(receiver.received) == 5, [r.json["event"] for r in receiver.received]
    rejected, crowned = received[1].json, received[2].json
    assert rejected["event"] == "gate_rejected" and rejected["run_id"] == second.run_id
    assert any("garbage.csv" in r for r in rejected["reasons"]), rejected["reasons"]
    assert rejected["data"]["added"] == ["garbage.csv"] and rejected["failed_stage"] == "validate"
    assert crowned["event"] == "new_champion" and crowned["recovered"] is True
    assert crowned["champion_version"] == "1" and crowned["champion_f1"] == pytest.approx(first.f1)
    assert crowned["f1"] == pytest.approx(third.f1)
    delta = third.f1 - first.f1  # type: ignore[operator]
    assert f"vs champion v1 {first.f1:.4f}: {delta:+.4f} ({delta / first.f1:+.2%})" in crowned["text"]
    change = crowned["data"]  # against the last accepted drop (run 1's): garbage.csv was never accepted
    assert (change["added"], change["changed"], change["removed"], change["compared"]) == (
        ["more.csv"],
        [],
        [],
        True,
    )
    assert change["rows"] > len(ROWS) // 2
    assert len({r.json["key"] for r in received}) == 3

    # The URL is a secret: in no log line, no MLflow param or tag, no status, doctor or notify output.
    assert SECRET not in json.dumps(daemon.lines)
    assert SECRET not in mlflow_values(daemon.state)
    for argv in (
        ["status"],
        ["status", "--json"],
        ["doctor"],
        ["notify", "list"],
        ["notify", "list", "--json"],
    ):
        out = run_cli(*argv, "--state-dir", str(daemon.state), env={"RETRAIND_NOTIFY_WEBHOOK_URL": hook})[2]
        assert SECRET not in out, argv
    listed = run_cli(
        "notify", "list", "--state-dir", str(daemon.state), env={"RETRAIND_NOTIFY_WEBHOOK_URL": hook}
    )
    (shown,) = json.loads(listed[2])["targets"]
    assert shown["target"] == "env-webhook (webhook http://127.0.0.1/…)" and shown["kind"] == "webhook"


def test_retraind_run_waits_a_bounded_time_and_the_next_run_delivers_what_was_left(
    tmp_path: Path, podman_ready: None, receiver: Receiver
) -> None:
    repo = committed_copy(tmp_path / "repo")
    data = tmp_path / "data"
    data.mkdir()
    drop(data, "good.csv", ROWS[::2])
    hook = f"{receiver.url}/hook/{SECRET}"
    env = {"RETRAIND_NOTIFY_WEBHOOK_URL": hook, "RETRAIND_NOTIFY_WAIT_S": "3", "HOME": os.environ["HOME"]}
    argv = [
        "run",
        "--json",
        "--repo",
        str(repo),
        "--data-dir",
        str(data),
        "--state-dir",
        str(tmp_path / "state"),
    ]
    receiver.stop()
    code, lines, out = run_cli(*argv, env=env)
    assert code == 0, out
    (left,) = [e for e in lines if e.get("event") == "notifications_waiting"]
    assert left["count"] == 1 and waiting(tmp_path / "state") == 1
    assert SECRET not in out
    receiver.start()
    code, lines, out = run_cli(*argv, env=env)  # up to date: nothing new to tell, the old one goes out
    assert code == 0, out
    assert not [e for e in lines if e.get("event") == "notifications_waiting"], out
    (got,) = receiver.received
    assert got.json["event"] == "new_champion" and got.json["model_version"] == "1"
    assert waiting(tmp_path / "state") == 0
