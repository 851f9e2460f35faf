from __future__ import annotations

from dataclasses import dataclass

from daemon.core.runqueue import Admission, RunQueue


@dataclass(frozen=True)
class C:
    source: str
    detail: str


@dataclass(frozen=True)
class Ev:
    causes: frozenset[C]


def ev(*pairs: tuple[str, str]) -> Ev:
    return Ev(frozenset(C(s, d) for s, d in pairs))


def merge(a: Ev, b: Ev) -> Ev:
    return Ev(a.causes | b.causes)


def test_three_events_during_a_run_make_exactly_one_follow_up_with_every_cause() -> None:
    q: RunQueue[Ev] = RunQueue(merge)
    assert q.submit(ev(("commit", "c1"))) is Admission.START
    assert q.submit(ev(("data", "a.csv"))) is Admission.QUEUED
    assert q.submit(ev(("commit", "c2"))) is Admission.COALESCED
    assert q.submit(ev(("manual", "alice"))) is Admission.COALESCED
    assert q.depth == 1
    follow_up = q.finished()
    assert follow_up == ev(("data", "a.csv"), ("commit", "c2"), ("manual", "alice"))
    assert q.running == follow_up and q.depth == 0
    assert q.finished() is None and q.running is None


def test_supersede_policy_asks_to_stop_the_running_pipeline_only_for_commits() -> None:
    q: RunQueue[Ev] = RunQueue(merge, supersede_on_commit=True)
    q.submit(ev(("commit", "c1")))
    assert q.submit(ev(("data", "a.csv"))) is Admission.QUEUED
    assert q.submit(ev(("commit", "c2"))) is Admission.SUPERSEDE
    assert q.finished() == ev(("data", "a.csv"), ("commit", "c2"))
