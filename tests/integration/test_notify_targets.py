"""Each notification target against a real HTTP receiver on 127.0.0.1: the payload shapes their APIs
document, the HMAC signature, at-least-once delivery to a receiver that was down, and a slow one."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from pathlib import Path

import pytest

from daemon.adapters.webhooks import SIGNATURE_HEADER, HttpSender
from daemon.core.notify import (
    CHALLENGER,
    GATE_REJECTED,
    NEW_CHAMPION,
    DataChange,
    Notice,
    Target,
    target_from,
)
from daemon.engine.courier import Courier
from daemon.state.journal import Journal
from daemon.state.notifications import Notifications
from tests.integration.daemon_harness import run_cli
from tests.integration.services import free_port
from tests.receiver import Receiver

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def champion_notice(run_id: str = "20261201t120000-abcdef") -> Notice:
    return Notice(
        NEW_CHAMPION, run_id, "succeeded", trigger="data", commit=COMMIT, subject="more reviews",
        data=DataChange(added=("drop-2.csv",), rows=1234, compared=True), f1=0.8123, champion_f1=0.8,
        champion_version="3", model_version="4", alias="champion", promotion_reason="weighted F1 up",
        durations={"build": 1.5, "train": 12.25}, duration_s=20.0, mlflow_run_id="abc123",
        run_link="http://mlflow.lab/#/experiments/1/runs/abc123",
        report_link="http://mlflow.lab/#/experiments/1/runs/abc123/artifacts/report/index.html",
    )  # fmt: skip


@pytest.fixture
def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    journal = Journal.open(tmp_path / "journal.db")
    yield Notifications(journal)
    journal.close()


def courier(outbox: Notifications, *targets: Target, timeout_s: float = 5.0) -> Courier:
    # rng 0: each retry is due after the 1 s minimum, so a test waits seconds, not minutes
    return Courier(outbox, {t.name: t for t in targets}, HttpSender(timeout_s), rng=random.Random(0))


def deliver(c: Courier, notice: Notice, *targets: Target) -> None:
    c.outbox.put(notice, [t.name for t in targets])
    assert c.drain(30) == 0, c.outbox.backlog()


def test_slack_gets_text_and_blocks(outbox: Notifications, receiver: Receiver) -> None:
    target = target_from({"kind": "slack", "url": f"{receiver.url}/services/T0/B0/XYZ"}, "test", 0)
    deliver(courier(outbox, target), champion_notice(), target)
    (got,) = receiver.received
    assert got.path == "/services/T0/B0/XYZ" and got.headers["Content-Type"] == "application/json"
    body = got.json
    assert body["text"].startswith("retraind: new champion v4")
    assert "weighted F1 0.8123 vs champion v3 0.8000: +0.0123 (+1.54%)" in body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "actions", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "retraind: new champion v4"}
    assert body["blocks"][1]["text"]["type"] == "mrkdwn"
    assert "1 added (drop-2.csv); 1,234 rows" in body["blocks"][1]["text"]["text"]
    assert [e["url"] for e in body["blocks"][2]["elements"]] == [
        "http://mlflow.lab/#/experiments/1/runs/abc123",
        "http://mlflow.lab/#/experiments/1/runs/abc123/artifacts/report/index.html",
    ]


def test_the_json_webhook_is_signed_with_hmac_sha256_and_carries_an_idempotency_key(
    outbox: Notifications, receiver: Receiver
) -> None:
    secret = "s3cret-key"
    target = target_from({"kind": "webhook", "url": f"{receiver.url}/hook", "secret": secret}, "test", 0)
    notice = champion_notice()
    deliver(courier(outbox, target), notice, target)
    (got,) = receiver.received
    expected = "sha256=" + hmac.new(secret.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers[SIGNATURE_HEADER], expected)
    wrong = "sha256=" + hmac.new(b"another key", got.body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(got.headers[SIGNATURE_HEADER], wrong)
    assert got.headers["Idempotency-Key"] == got.headers["X-Retraind-Delivery"] == notice.key
    assert got.headers["X-Retraind-Event"] == NEW_CHAMPION
    body = got.json
    assert body["schema"] == "retraind.notification/v1" and body["key"] == notice.key
    assert (body["event"], body["f1"], body["champion_f1"], body["model_version"]) == (
        NEW_CHAMPION,
        0.8123,
        0.8,
        "4",
    )
    assert body["commit"] == COMMIT and body["data"]["added"] == ["drop-2.csv"]
    assert Notice.from_json(notice.to_json()) == notice


def test_an_unsigned_webhook_has_no_signature_header(outbox: Notifications, receiver: Receiver) -> None:
    target = target_from({"kind": "webhook", "url": f"{receiver.url}/hook"}, "test", 0)
    deliver(courier(outbox, target), champion_notice(), target)
    assert SIGNATURE_HEADER not in receiver.received[0].headers


def test_gitea_commit_status_has_the_documented_fields(outbox: Notifications, receiver: Receiver) -> None:
    target = target_from(
        {"kind": "gitea", "url": receiver.url, "repo": "lab/sentiment", "token": "gitea-token"}, "test", 0
    )
    rejected = Notice(
        GATE_REJECTED, "r2", "gate_rejected", commit=COMMIT, failed_stage="validate",
        reasons=("bad.csv: 12 rows have an unknown label 'meh'",),
    )  # fmt: skip
    c = courier(outbox, target)
    deliver(c, rejected, target)
    deliver(c, champion_notice(), target)
    failure, success = receiver.received
    assert failure.path == f"/api/v1/repos/lab/sentiment/statuses/{COMMIT}"
    assert failure.headers["Authorization"] == "token gitea-token"
    assert failure.json == {
        "state": "failure",
        "description": "data gate rejected the drop: bad.csv: 12 rows have an unknown label 'meh'",
        "context": "retraind",
    }
    assert success.json["state"] == "success" and success.json["target_url"].endswith("report/index.html")
    assert len(success.json["description"]) <= 140


def test_gitlab_commit_status_has_the_documented_fields(outbox: Notifications, receiver: Receiver) -> None:
    target = target_from(
        {
            "kind": "gitlab",
            "url": receiver.url,
            "project": "lab/sentiment",
            "token": "glpat-x",
            "context": "ml",
        },
        "test",
        0,
    )
    challenger = Notice(
        CHALLENGER, "r3", "succeeded", commit=COMMIT, f1=0.7, champion_f1=0.8, model_version="5"
    )
    deliver(courier(outbox, target), challenger, target)
    (got,) = receiver.received
    assert got.path == f"/api/v4/projects/lab%2Fsentiment/statuses/{COMMIT}"
    assert got.headers["Private-Token"] == "glpat-x"
    assert got.json["state"] == "success" and got.json["name"] == "ml"
    assert got.json["description"].startswith("challenger: not better than the champion: weighted F1 0.7000")
    assert "target_url" not in got.json  # no MLflow UI configured: no link


def test_a_receiver_that_is_down_gets_the_message_exactly_once_after_it_comes_back(
    outbox: Notifications, receiver: Receiver
) -> None:
    target = target_from({"kind": "webhook", "url": f"{receiver.url}/hook"}, "test", 0)
    c = courier(outbox, target)
    receiver.stop()
    outbox.put(champion_notice(), [target.name])
    assert c.deliver_due() == 0
    backlog = outbox.backlog()
    assert backlog.waiting == 1 and "ConnectionError" in (backlog.last_error or "")
    receiver.start()  # the same port
    assert c.drain(30) == 0  # the retry after its backoff
    for _ in range(3):  # further passes send nothing again
        c.deliver_due()
    (got,) = receiver.received
    assert got.json["key"] == champion_notice().key
    (row,) = outbox.rows()
    assert row[3] == 2 and row[4] is not None  # two attempts, delivered


def test_a_receiver_answering_500_is_retried_and_one_answering_429_is_waited_for(
    outbox: Notifications, receiver: Receiver
) -> None:
    target = target_from({"kind": "webhook", "url": f"{receiver.url}/hook"}, "test", 0)
    c = courier(outbox, target)
    receiver.status = 500
    outbox.put(champion_notice(), [target.name])
    c.deliver_due()
    assert "HTTP 500" in (outbox.backlog().last_error or "") and not receiver.received
    receiver.status = 200
    assert c.drain(30) == 0 and len(receiver.received) == 1


def test_a_slow_receiver_costs_a_one_shot_run_at_most_its_bounded_wait(
    outbox: Notifications, receiver: Receiver
) -> None:
    target = target_from({"kind": "webhook", "url": f"{receiver.url}/hook"}, "test", 0)
    c = courier(outbox, target, timeout_s=1.0)
    receiver.hold.clear()  # every request hangs
    outbox.put(champion_notice(), [target.name])
    started = time.monotonic()
    left = c.drain(2.0)
    took = time.monotonic() - started
    assert left == 1 and took < 6.0, took  # the wait, plus at most one request's timeout
    assert "ReadTimeout" in (outbox.backlog().last_error or "")
    receiver.hold.set()
    assert c.drain(30) == 0
    assert len(receiver.received) >= 1  # the timed-out request may also have landed: at least once
    assert {r.json["key"] for r in receiver.received} == {champion_notice().key}


def test_notify_test_as_typed_reaches_every_target_and_names_the_one_that_failed(
    tmp_path: Path, receiver: Receiver
) -> None:
    notify = tmp_path / "notify.toml"
    notify.write_text(
        f'[[targets]]\nname = "team"\nkind = "slack"\nurl = "{receiver.url}/services/T/B/SECRET1"\n\n'
        f'[[targets]]\nname = "gone"\nkind = "webhook"\nurl = "http://127.0.0.1:{free_port()}/SECRET2"\n'
    )
    notify.chmod(0o600)
    env = {"RETRAIND_NOTIFY_FILE": str(notify), "RETRAIND_NOTIFY_WEBHOOK_URL": f"{receiver.url}/hook/SECRET3"}
    code, lines, out = run_cli("notify", "test", "--state-dir", str(tmp_path / "state"), env=env)
    assert code == 5, out  # one target failed
    results = {line["target"].split(" ")[0]: line for line in lines if "target" in line}
    assert results["team"]["ok"] and results["env-webhook"]["ok"] and not results["gone"]["ok"]
    assert "ConnectionError" in results["gone"]["detail"]
    assert not any(f"SECRET{i}" in out for i in (1, 2, 3)), out
    hook, slack = sorted(receiver.received, key=lambda r: r.path)
    assert hook.path == "/hook/SECRET3" and hook.json["event"] == "test"
    assert slack.json["text"].startswith("retraind: test notification")
    notify.chmod(0o644)
    code, _, out = run_cli("notify", "test", "--state-dir", str(tmp_path / "state"), env=env)
    assert code == 78 and "chmod 600" in out and "SECRET" not in out
