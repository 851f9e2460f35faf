"""The courier: delivers the notification outbox at least once, in a thread of its own, so a
receiver that is down or slow never delays a run. Capped exponential backoff with full jitter
(daemon/core/notify.py::backoff_s), a receiver's Retry-After respected, given up after a day.

The daemon runs it in the background; `retraind run` drains it for a bounded time before it exits
and leaves the rest in the journal for the next run or the daemon.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from daemon.core.notify import MAX_AGE_S, Notice, Redactor, Target, backoff_s
from daemon.engine.metrics import NOTIFY_KINDS, Metrics, bounded
from daemon.state.notifications import Notifications, Pending

log = structlog.get_logger()


class Sender(Protocol):
    def send(self, target: Target, notice: Notice) -> int: ...


class Courier:
    def __init__(
        self,
        outbox: Notifications,
        targets: Mapping[str, Target],
        sender: Sender,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        lease_s: float = 60.0,
    ) -> None:
        self.outbox, self.sender, self.metrics = outbox, sender, metrics
        self.use(targets)
        self.rng, self.clock, self.lease_s = rng or random.Random(), clock, lease_s
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def use(self, targets: Mapping[str, Target]) -> None:
        """The targets to deliver to (at start, and after a reload: rows for a target no longer
        configured are dropped when due)."""
        self.redact = Redactor(s for t in targets.values() for s in t.secrets)
        self.targets = dict(targets)

    # -- one pass ------------------------------------------------------------------------
    def deliver_due(self, force: bool = False) -> int:
        """Try each due notification once (force: each waiting one); returns how many were delivered."""
        delivered = 0
        for pending in self.outbox.due(force=force):
            if self._stopping.is_set():
                break
            if self.outbox.claim(pending, self.lease_s):
                delivered += self._deliver(pending)
        self._gauge()
        return delivered

    def _deliver(self, pending: Pending) -> int:
        target = self.targets.get(pending.target)
        fields = {
            "key": pending.key,
            "target": pending.target,
            "notification": pending.event,
            "run_id": pending.run_id,
        }
        if target is None:
            self.outbox.dropped(pending, f"target {pending.target!r} is no longer configured")
            log.warning("notification_dropped", **fields, reason="target no longer configured")
            self._count("unknown", "dropped")
            return 0
        try:
            self.sender.send(target, Notice.from_json(pending.notice))
        except Exception as e:  # DeliveryError, or a bug in a payload: never the courier's end
            error = self.redact(str(e))
            if self.clock() - pending.created_at > MAX_AGE_S:
                self.outbox.dropped(pending, f"given up after {pending.attempts + 1} attempts: {error}")
                log.error("notification_dropped", **fields, attempts=pending.attempts + 1, error=error)
                self._count(target.kind, "dropped")
                return 0
            delay = backoff_s(pending.attempts + 1, self.rng)
            asked = getattr(e, "retry_after_s", None)
            if asked is not None:
                delay = max(delay, min(float(asked), 3600.0))
            self.outbox.failed(pending, delay, error)
            log.warning("notification_retry_later", **fields, attempts=pending.attempts + 1,
                        retry_in_s=round(delay, 1), error=error)  # fmt: skip
            self._count(target.kind, "retry")
            return 0
        self.outbox.delivered(pending)
        log.info("notification_delivered", **fields, attempts=pending.attempts + 1)
        self._count(target.kind, "delivered")
        return 1

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(bounded(kind, NOTIFY_KINDS, "unknown"), outcome).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.notification_backlog.set(self.outbox.backlog().waiting)

    # -- `retraind run`: a bounded wait ----------------------------------------------------
    def drain(self, wait_s: float) -> int:
        """Each waiting notification once, then what falls due within the wait; returns what is
        left waiting (for the next run or the daemon)."""
        deadline = self.clock() + wait_s
        self.deliver_due(force=True)
        while True:
            left = self.outbox.backlog().waiting
            upcoming = self.outbox.next_due()
            if not left or upcoming is None or upcoming >= deadline:
                return left
            pause = max(0.05, min(upcoming - self.clock(), deadline - self.clock()))
            if self._stopping.wait(pause):
                return left
            self.deliver_due()

    # -- the daemon's thread ---------------------------------------------------------------
    def wake(self) -> None:
        """New notifications are in the journal: send them now rather than at the next due time."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="courier", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self, idle_s: float = 60.0) -> None:
        while not self._stopping.is_set():
            try:
                self.deliver_due()
                upcoming = self.outbox.next_due()
            except Exception as e:  # the journal on a full disk, a bug: log once a pass, carry on
                log.error("courier_failed", error=self.redact(str(e)))
                if self.metrics is not None:
                    self.metrics.loop_errors.labels("other").inc()
                upcoming = None
            pause = idle_s if upcoming is None else min(idle_s, max(0.0, upcoming - self.clock()))
            if self._wake.wait(pause):
                self._wake.clear()
