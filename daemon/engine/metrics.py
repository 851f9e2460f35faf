"""Prometheus metrics of retraind, on an injected registry; nothing is created at import time."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.exposition import ThreadingWSGIServer

from daemon import __version__
from daemon.core.notify import KINDS
from daemon.core.stages import STAGE_NAMES
from daemon.core.vocab import (
    DAEMON_TRIGGERS,
    RETURNED,
    RUN_STATUSES,
    STAGE_OUTCOMES,
    SUCCEEDED,
    TRIGGERS,
)

# No `*_created` samples: in the text format Prometheus keeps each as a gauge series of its own (a
# counter's or histogram child's creation time), which no panel, rule or alert reads; with 50 runs
# recorded they were 72 of 442 lines, and formatting their timestamps a share of every scrape. The
# switch is prometheus_client's, for the whole process (the daemon's and `retraind run`'s export).
disable_created_metrics()  # type: ignore[no-untyped-call]

# Stages take from half a second (a cache hit) to hours (a big training): buckets reach 4 h.
BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
STAGES = STAGE_NAMES
RUN_OUTCOMES = RUN_STATUSES
# What a run can end as and be triggered by, so what is pre-initialised: "interrupted" is only ever a
# journal status (a crash leaves no process to count it) and "ci" only a one-shot `retraind run`
# flag, whose single run is recorded before its metrics are exported.
DAEMON_RUN_OUTCOMES = RETURNED
SOURCES = DAEMON_TRIGGERS  # a cause's source names the trigger of a run it alone starts
NOTIFY_KINDS = (*KINDS, "unknown")  # a notification's target kind ("unknown": no longer configured)
NOTIFY_OUTCOMES = ("delivered", "retry", "dropped")
LOOP_ERROR_REASONS = ("no_space", "other")  # why the loop caught an exception (daemon/core/nospace.py)
GATE_REASONS = (
    "jest",
    "parity",
    "unsafe_file",
    "missing_column",
    "unknown_label",
    "empty_share",
    "no_rows",
    "parse_error",
    "encoding",
    "binary",
    "duplicates",
    "conflicts",
    "class_balance",
    "text_length",
    "drift",
    "other",
)
# check-data.js's problem kinds, folded into the bounded reasons above.
_GATE_KIND_REASON = {
    "nul_bytes": "binary",
    "duplicate": "duplicates",
    "conflicting_labels": "conflicts",
    "single_class": "class_balance",
    "class_too_small": "class_balance",
    "text_too_long": "text_length",
    "drift_labels": "drift",
    "drift_lengths": "drift",
    "unreadable": "unsafe_file",
}


def bounded(value: str, allowed: tuple[str, ...], fallback: str = "other") -> str:
    """Labels are bounded enums: anything unexpected is folded into one value."""
    return value if value in allowed else fallback


class Metrics:
    def __init__(self, registry: CollectorRegistry, version: str = __version__) -> None:
        r = registry
        self.stage_duration = Histogram(
            "retraind_stage_duration_seconds",
            "Duration of one stage of one run.",
            ["stage", "outcome"],
            buckets=BUCKETS,
            registry=r,
        )
        self.pipeline_duration = Histogram(
            "retraind_pipeline_duration_seconds",
            "Duration of a whole run.",
            ["outcome"],
            buckets=BUCKETS,
            registry=r,
        )
        self.runs = Counter("retraind_runs", "Finished runs.", ["outcome", "trigger"], registry=r)
        self.last_run_f1 = Gauge(
            "retraind_last_run_f1", "Weighted F1 of the last run that trained.", registry=r
        )
        self.champion_f1 = Gauge("retraind_champion_f1", "Weighted F1 of the champion model.", registry=r)
        self.last_run = Gauge(
            "retraind_last_run_timestamp_seconds", "When the last run finished.", registry=r
        )
        self.last_success = Gauge(
            "retraind_last_success_timestamp_seconds", "When the last successful run finished.", registry=r
        )
        self.events = Counter("retraind_events", "Pipeline events by cause.", ["source"], registry=r)
        self.coalesced = Counter(
            "retraind_events_coalesced", "Events merged into a waiting follow-up run.", registry=r
        )
        self.queue_depth = Gauge("retraind_queue_depth", "Runs waiting (0 or 1).", registry=r)
        self.cache_hits = Counter(
            "retraind_stage_cache_hits", "Stages skipped as up to date.", ["stage"], registry=r
        )
        self.gate_failures = Counter(
            "retraind_gate_failures", "Gate rejections by reason.", ["reason"], registry=r
        )
        self.backlog = Gauge(
            "retraind_tracking_backlog", "Runs waiting in the outbox for MLflow.", registry=r
        )
        self.notification_backlog = Gauge(
            "retraind_notification_backlog",
            "Notifications waiting in the journal for their target (delivered at least once).",
            registry=r,
        )
        self.notifications = Counter(
            "retraind_notifications",
            "Notification delivery attempts by target kind and outcome (delivered, retry, dropped).",
            ["kind", "outcome"],
            registry=r,
        )
        self.loop_errors = Counter(
            "retraind_loop_errors",
            "Exceptions caught at the daemon loop's boundary (once per event or run), by reason.",
            ["reason"],
            registry=r,
        )
        self.no_space = Gauge(
            "retraind_state_no_space",
            "1 while writes to the state directory fail for lack of space, 0 once one succeeds.",
            registry=r,
        )
        self.held_writes = Gauge(
            "retraind_journal_held_writes",
            "Journal writes kept in memory until the disk has room.",
            registry=r,
        )
        self.state_bytes = Gauge(
            "retraind_state_bytes",
            "Disk used by the state directory (run directories, data objects, journal, embedded MLflow),"
            " measured after each run's retention pass.",
            registry=r,
        )
        self.build_info = Gauge(
            "retraind_build_info", "Always 1; the version as a label.", ["version"], registry=r
        )
        self.build_info.labels(version).set(1)
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        """The series a dashboard or an alert reads before their first event exist from the start, at 0.

        rate() and increase() miss a series' first increment when the series is born with it, and a
        panel of nothing shows "No data". Every other combination appears when it first happens:
        each pre-initialised histogram child costs 18 samples on every scrape (issue 15).
        """
        for stage in STAGES:
            # Cache hits by stage: a panel's increase(); any stage can come from the stage cache.
            self.cache_hits.labels(stage)
            # Durations: only outcome="success" is read (the p95 recording rule, its panel and
            # RetraindStageSlowerThanLastWeek, all rate() of the buckets). Failures, cancellations and
            # cache hits are read by nothing, so their 15 children appear on their first observation.
            self.stage_duration.labels(stage, "success")
        for outcome in DAEMON_RUN_OUTCOMES:
            # "Pipeline duration p95 by outcome": rate() by outcome, for every outcome a run can end in.
            self.pipeline_duration.labels(outcome)
            for trigger in DAEMON_TRIGGERS:
                # increase() by outcome and by trigger in the panels; RetraindNoSuccessfulRun reads
                # outcome="up_to_date" of commit and data runs. Every pair can occur.
                self.runs.labels(outcome, trigger)
        for source in SOURCES:  # RetraindNoSuccessfulRun: increase() of commit and data events
            self.events.labels(source)
        for reason in GATE_REASONS:  # RetraindGateFailuresRepeated sums increase() over every reason
            self.gate_failures.labels(reason)
        for reason in LOOP_ERROR_REASONS:  # RetraindLoopErrors: increase() of reason="other"
            self.loop_errors.labels(reason)
        for kind in KINDS:  # RetraindNotificationsDropped: increase() of outcome="dropped"
            self.notifications.labels(kind, "dropped")

    def restore(self, gauges: Mapping[str, float]) -> None:
        """Gauges from the state journal at start, so a restart does not blank the dashboards."""
        targets = {
            "last_run_f1": self.last_run_f1,
            "champion_f1": self.champion_f1,
            "last_run_finished_at": self.last_run,
            "last_success_finished_at": self.last_success,
        }
        for key, gauge in targets.items():
            if key in gauges:
                gauge.set(gauges[key])

    def stage(self, stage: str, outcome: str, seconds: float) -> None:
        self.stage_duration.labels(
            bounded(stage, STAGES), bounded(outcome, STAGE_OUTCOMES, "failure")
        ).observe(seconds)

    def run(
        self, outcome: str, trigger: str, seconds: float, finished_at: float, f1: float | None, champion: bool
    ) -> None:
        outcome = bounded(outcome, RUN_OUTCOMES, "failed")
        self.runs.labels(outcome, bounded(trigger, TRIGGERS, "manual")).inc()
        self.pipeline_duration.labels(outcome).observe(seconds)
        self.last_run.set(finished_at)
        if f1 is not None:
            self.last_run_f1.set(f1)
            if champion:
                self.champion_f1.set(f1)
        if outcome == SUCCEEDED:
            self.last_success.set(finished_at)

    def event(self, sources: set[str]) -> None:
        for source in sources - {"force"}:  # a modifier of a manual trigger, not a source of its own
            self.events.labels(bounded(source, SOURCES, "manual")).inc()

    def gate_failure(self, kinds: set[str]) -> None:
        reasons = {bounded(_GATE_KIND_REASON.get(kind, kind), GATE_REASONS) for kind in kinds} or {"other"}
        for reason in reasons:
            self.gate_failures.labels(reason).inc()


# Text format 0.0.4 whatever the scraper prefers. Prometheus asks for OpenMetrics first, which
# prometheus_client 0.26 writes escaping every sample name a character at a time: 4.0 ms against
# 2.3 ms for the same 50 runs in text (bench/metrics_scrape.py). The text format carries everything
# the dashboards and rules read, and Prometheus offers it in every scrape's Accept header.
TEXT_FORMAT = "text/plain; version=0.0.4"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (structlog has the daemon's events)."""


def metrics_app(registry: CollectorRegistry) -> Any:
    """prometheus_client's WSGI app, always in text format and uncompressed.

    Uncompressed: gzip (level 9) of the 38 KB costs 0.2-0.4 ms a scrape to save bytes on loopback.
    """
    app = make_wsgi_app(registry, disable_compression=True)

    def text_only(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return app({**environ, "HTTP_ACCEPT": TEXT_FORMAT}, start_response)  # type: ignore[no-any-return]

    return text_only


def start_metrics_server(
    port: int, addr: str, registry: CollectorRegistry, poll_interval_s: float = 5.0
) -> tuple[WSGIServer, threading.Thread]:
    """What prometheus_client.start_http_server does (a thread per scrape), serving `metrics_app`.

    `poll_interval_s` is how often the idle server thread wakes up to check for shutdown(): the
    library's 0.5 s would be two wake-ups a second of an idle daemon. Raises OSError (port in use).
    """
    found = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = found[0]  # an IPv6 metrics_addr needs an AF_INET6 socket

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(str(sockaddr[0]), port, metrics_app(registry), Server, handler_class=_QuietHandler)
    serve = {"poll_interval": poll_interval_s}
    thread = threading.Thread(target=httpd.serve_forever, kwargs=serve, name="metrics-http", daemon=True)
    thread.start()
    return httpd, thread


def export_oneshot(registry: CollectorRegistry, pushgateway_url: str, textfile_dir: str) -> list[str]:
    """A short-lived `retraind run` has no endpoint to scrape: push, or leave a textfile."""
    from prometheus_client import push_to_gateway, write_to_textfile

    done = []
    if pushgateway_url:
        push_to_gateway(pushgateway_url, job="retraind", registry=registry)
        done.append(pushgateway_url)
    if textfile_dir:
        target = f"{textfile_dir.rstrip('/')}/retraind.prom"
        write_to_textfile(target, registry)  # atomic: written to a temporary file, then renamed
        done.append(target)
    return done
