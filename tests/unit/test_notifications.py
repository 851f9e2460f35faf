"""Notifications: what a run tells whom, the notify file and its secrets, the outbox in the journal
(one transaction with the run's row), and the courier's retries."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from daemon.adapters.notifyfile import load_targets
from daemon.commands.status import render_status
from daemon.core.config import load_settings
from daemon.core.errors import ConfigError
from daemon.core.notify import (
    BACKOFF_MAX_S,
    CHALLENGER,
    DEFAULT_EVENTS,
    GATE_REJECTED,
    INFRA_FAILED,
    MAX_AGE_S,
    NEW_CHAMPION,
    RECOVERED,
    STAGE_FAILED,
    STATUS_EVENTS,
    Notice,
    Redactor,
    Target,
    backoff_s,
    data_change,
    event_for,
    routed,
    target_from,
    targets_from,
)
from daemon.engine.courier import Courier
from daemon.state.journal import Journal
from daemon.state.notifications import Notifications, record_outcome
from tests.fakes import FakeClock


@pytest.mark.parametrize(
    ("status", "champion", "previous_failed", "expected"),
    [
        ("gate_rejected", None, False, GATE_REJECTED),
        ("failed", None, True, STAGE_FAILED),
        ("succeeded", True, False, NEW_CHAMPION),
        ("succeeded", False, True, CHALLENGER),
        ("succeeded", None, True, RECOVERED),  # queued, or register from the cache, after a failure
        ("up_to_date", None, True, RECOVERED),
        ("up_to_date", None, False, None),
        ("succeeded", None, False, None),
        ("cancelled", None, True, None),
    ],
)
def test_a_run_tells_one_thing_given_how_the_one_before_ended(
    status: str, champion: bool | None, previous_failed: bool, expected: str | None
) -> None:
    assert event_for(status, STAGE_FAILED, champion, previous_failed) == expected


def test_a_failed_run_says_whether_the_stage_or_the_infrastructure_failed() -> None:
    assert event_for("failed", INFRA_FAILED, None, False) == INFRA_FAILED


def test_defaults_are_failures_and_champion_changes_and_a_recovered_champion_reaches_both() -> None:
    slack = Target("s", "slack", "https://hooks.slack.com/services/T/B/X")
    assert slack.events == DEFAULT_EVENTS and CHALLENGER not in slack.events
    only_recoveries = Target("r", "webhook", "https://x.lab/hook", events=(RECOVERED,))
    crowned = Notice(NEW_CHAMPION, "r1", "succeeded", recovered=True)
    assert routed(crowned, [slack, only_recoveries]) == [slack, only_recoveries]
    assert routed(Notice(CHALLENGER, "r2", "succeeded"), [slack, only_recoveries]) == []
    assert crowned.title == "retraind: new champion (recovered after a failure)"


def test_a_commit_status_needs_a_commit() -> None:
    gitea = target_from({"kind": "gitea", "url": "https://git.lab", "repo": "a/b", "token": "t"}, "f", 0)
    assert gitea.events == STATUS_EVENTS
    assert routed(Notice(GATE_REJECTED, "r", "gate_rejected"), [gitea]) == []
    assert routed(Notice(GATE_REJECTED, "r", "gate_rejected", commit="c" * 40), [gitea]) == [gitea]


def test_the_f1_line_gives_the_delta_and_the_percent_against_the_champion() -> None:
    notice = Notice(CHALLENGER, "r", "succeeded", f1=0.7, champion_f1=0.8, champion_version="3")
    assert notice.f1_line == "weighted F1 0.7000 vs champion v3 0.8000: -0.1000 (-12.50%)"
    assert Notice(NEW_CHAMPION, "r", "succeeded", f1=0.7).f1_line == "weighted F1 0.7000 (no champion before)"
    long = Notice(GATE_REJECTED, "r", "gate_rejected", reasons=("x" * 300,))
    assert len(long.description) == 140 and long.description.endswith("…")


def test_the_data_change_is_against_the_last_accepted_drop() -> None:
    before = [{"name": "a.csv", "sha256": "1"}, {"name": "b.csv", "sha256": "2"}]
    now = [
        {"name": "a.csv", "sha256": "1"},
        {"name": "b.csv", "sha256": "9"},
        {"name": "c.csv", "sha256": "3"},
    ]
    change = data_change(before, now, 1500)
    assert (change.added, change.changed, change.removed) == (("c.csv",), ("b.csv",), ())
    assert change.line == "data: 1 added (c.csv), 1 changed (b.csv); 1,500 rows"
    assert data_change(None, now, None).line == "data: no earlier accepted drop"
    assert data_change(now, now, 3).line == "data: unchanged; 3 rows"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "teams", "url": "https://x"}, "kind must be one of slack, webhook, gitea, gitlab"),
        ({"kind": "slack", "url": "hooks.slack.com/services/T/B/SECRET"}, "url must be an http(s) URL"),
        ({"kind": "gitea", "url": "https://git.lab"}, 'needs token = "..." and repo = "owner/name"'),
        ({"kind": "webhook", "url": "https://x.lab", "events": ["oops"]}, "unknown event(s) oops"),
        ({"kind": "webhook", "url": "https://x.lab", "colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_a_bad_target_says_what_to_change_and_never_echoes_its_url(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        targets_from({"targets": [entry]}, "notify.toml")
    assert "SECRET" not in str(caught.value)


def test_targets_print_no_secret() -> None:
    t = target_from(
        {"kind": "webhook", "url": "https://hooks.lab/h/SECRETPATH?token=QUERY", "secret": "HMACKEY"}, "f", 0
    )
    assert "SECRETPATH" not in repr(t) and "HMACKEY" not in repr(t) and "QUERY" not in repr(t)
    assert t.shown == "webhook-1 (webhook https://hooks.lab/…)"
    redact = Redactor(t.secrets)
    text = (
        "POST https://hooks.lab/h/SECRETPATH?token=QUERY failed; url: /h/SECRETPATH?token=QUERY; key HMACKEY"
    )
    assert redact(text) == "POST [redacted] failed; url: [redacted]; key [redacted]"


def settings(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    return load_settings({"state_dir": tmp_path / "state", **overrides}, environ={"HOME": str(tmp_path)})


def test_the_notify_file_must_be_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "notify.toml"
    path.write_text('[[targets]]\nkind = "slack"\nurl = "https://hooks.slack.com/services/T/B/X"\n')
    path.chmod(0o640)
    s = settings(tmp_path, notify_file=path)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0640\).*chmod 600"):
        load_targets(s, environ={})
    path.chmod(0o600)
    (slack,) = load_targets(s, environ={})
    assert (slack.kind, slack.name) == ("slack", "slack-1")


def test_one_variable_is_a_json_webhook_with_the_default_events(tmp_path: Path) -> None:
    found = load_targets(settings(tmp_path), environ={"RETRAIND_NOTIFY_WEBHOOK_URL": "https://ci.lab/hook",
                                                       "RETRAIND_NOTIFY_WEBHOOK_SECRET": "k"})  # fmt: skip
    assert [(t.name, t.kind, t.events, t.secret) for t in found] == [
        ("env-webhook", "webhook", DEFAULT_EVENTS, "k")
    ]
    assert (
        load_targets(settings(tmp_path), environ={}) == []
    )  # no file at the default path: nothing configured
    with pytest.raises(ConfigError, match="does not exist"):
        load_targets(settings(tmp_path, notify_file=tmp_path / "missing.toml"), environ={})


def test_backoff_is_capped_with_full_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_s(n, rng) for n in range(1, 40)]
    assert all(1.0 <= d <= BACKOFF_MAX_S for d in delays)
    assert max(delays[:3]) <= 8.0 and max(delays) > BACKOFF_MAX_S / 2
    assert len({round(d, 3) for d in delays[10:]}) == len(delays[10:])  # jittered, not one fixed step


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = FakeClock(1000.0)
    j = Journal.open(tmp_path / "journal.db", clock=clock.now)
    j.fake_clock = clock  # type: ignore[attr-defined]
    yield j
    j.close()


def test_a_runs_notifications_are_written_with_its_row_or_not_at_all(journal: Journal) -> None:
    notice = Notice(GATE_REJECTED, "r1", "gate_rejected")

    def write(tx, at):  # type: ignore[no-untyped-def]
        return record_outcome(tx, lambda state: (notice, {"failing": "1"}), lambda n: ["slack"], at)

    journal.start_run("r1", "data", [], None, None)
    journal.finish_run("r1", "gate_rejected", 3, also=write)
    with pytest.raises(ValueError, match="not running"):  # the row fails: its notifications roll back too
        journal.finish_run("r1", "gate_rejected", 3, also=write)
    outbox = Notifications(journal)
    assert [(k, t, e) for k, t, e, *_ in outbox.rows()] == [
        ("retraind:r1:gate_rejected", "slack", GATE_REJECTED)
    ]
    with journal.transaction() as tx:  # the same notice again is the same row (idempotent key)
        record_outcome(tx, lambda state: (notice, {}), lambda n: ["slack"], 1.0)
        assert dict(tx.execute("SELECT name, value FROM notify_state")) == {"failing": "1"}
    assert len(outbox.rows()) == 1


class FlakySender:
    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures, self.retry_after, self.sent = failures, retry_after, []  # type: ignore[var-annotated]

    def send(self, target: Target, notice: Notice) -> int:
        if self.failures:
            self.failures -= 1
            error = RuntimeError(f"refused by {target.url}")
            error.retry_after_s = self.retry_after  # type: ignore[attr-defined]
            raise error
        self.sent.append(notice.key)
        return 200


def test_the_courier_retries_after_its_backoff_delivers_once_and_redacts_the_error(journal: Journal) -> None:
    clock = journal.fake_clock  # type: ignore[attr-defined]
    target = Target("hook", "webhook", "https://x.lab/h/SECRET")
    sender = FlakySender(failures=1, retry_after=30.0)
    courier = Courier(Notifications(journal), {"hook": target}, sender, rng=random.Random(1), clock=clock.now)
    courier.outbox.put(Notice(NEW_CHAMPION, "r1", "succeeded"), ["hook"])
    assert courier.deliver_due() == 0
    backlog = courier.outbox.backlog()
    assert backlog.waiting == 1 and backlog.last_error == "refused by [redacted]"
    clock.advance(29.0)
    assert courier.deliver_due() == 0 and sender.sent == []  # Retry-After: 30 s
    clock.advance(1.5)
    assert courier.deliver_due() == 1 and courier.deliver_due() == 0
    assert sender.sent == ["retraind:r1:new_champion"] and courier.outbox.backlog().waiting == 0


def test_a_notification_is_given_up_after_a_day_and_one_for_a_removed_target_is_dropped(
    journal: Journal,
) -> None:
    clock = journal.fake_clock  # type: ignore[attr-defined]
    outbox = Notifications(journal)
    outbox.put(Notice(NEW_CHAMPION, "r1", "succeeded"), ["hook", "gone"])
    courier = Courier(
        outbox, {"hook": Target("hook", "webhook", "https://x")}, FlakySender(10**6), clock=clock.now
    )
    courier.deliver_due()
    assert outbox.backlog().waiting == 1 and outbox.backlog().dropped == 1  # "gone" is not configured
    clock.advance(MAX_AGE_S + 1)
    courier.deliver_due(force=True)
    assert outbox.backlog().waiting == 0 and outbox.backlog().dropped == 2


def test_a_claimed_notification_is_not_sent_by_another_process_meanwhile(journal: Journal) -> None:
    outbox = Notifications(journal)
    outbox.put(Notice(NEW_CHAMPION, "r1", "succeeded"), ["hook"])
    (pending,) = outbox.due()
    assert outbox.claim(pending, lease_s=60.0)
    assert outbox.due() == [] and not outbox.claim(pending, lease_s=60.0)


def test_status_shows_the_backlog_and_its_redacted_last_error() -> None:
    notes = {"waiting": 2, "oldest_at": 1.0, "last_error": "refused by [redacted]", "dropped": 1}
    status = {"daemon": {"up": False}, "current": None, "recent": [], "notifications": notes}
    assert "notifications: 2 waiting, 1 given up; last error: refused by [redacted]" in render_status(status)


def test_a_notice_written_by_a_newer_retraind_is_still_delivered() -> None:
    import json

    data = json.loads(Notice(GATE_REJECTED, "r1", "gate_rejected", reasons=("x",)).to_json())
    data["severity_score"] = 3  # a field this version does not know
    assert Notice.from_json(json.dumps(data)) == Notice(GATE_REJECTED, "r1", "gate_rejected", reasons=("x",))


def test_slack_text_escapes_its_control_characters() -> None:
    from daemon.adapters.webhooks import slack_payload

    body = slack_payload(Notice(GATE_REJECTED, "r1", "gate_rejected", reasons=("a <b> & c",)))
    assert "reason: a &lt;b&gt; &amp; c" in body["text"]
    assert "reason: a &lt;b&gt; &amp; c" in body["blocks"][1]["text"]["text"]


def test_a_journal_that_refuses_the_rows_costs_the_notices_not_the_run(tmp_path: Path) -> None:
    from daemon.core.outcome import PipelineOutcome
    from daemon.engine.announce import Announcer, OutboxRecorder

    class FullDisk(Notifications):
        def record(self, notice_for, route):  # type: ignore[no-untyped-def]
            raise OSError(28, "No space left on device")

    journal = Journal.open(tmp_path / "journal.db")
    try:
        woken = []
        announcer = Announcer(settings(tmp_path), [], wake=lambda: woken.append(1), host="h")
        recorder = OutboxRecorder(announcer, FullDisk(journal))
        recorder.run_finished(PipelineOutcome("r1", {}, {}, 1.0))  # does not raise
        assert woken == []
    finally:
        journal.close()
