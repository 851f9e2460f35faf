"""Prometheus metrics of retraind, on an injected registry; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from daemon import __version__

# Stages take from half a second (a cache hit) to hours (a big training): buckets reach 4 h.
BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
STAGES = ("build", "validate", "preprocess", "train", "register")
STAGE_OUTCOMES = ("success", "failure", "cancelled", "cache_hit")
RUN_OUTCOMES = ("succeeded", "failed", "gate_rejected", "cancelled", "interrupted", "up_to_date")
TRIGGERS = ("commit", "data", "schedule", "manual", "rescan", "ci")
SOURCES = ("commit", "data", "schedule", "manual", "rescan")
LOOP_ERROR_REASONS = ("no_space", "other")  # why the loop caught an exception (daemon/nospace.py)
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
        """Every bounded label value exists from the start, so rates and panels see zeros, not gaps."""
        for stage in STAGES:
            self.cache_hits.labels(stage)
            for outcome in STAGE_OUTCOMES:
                self.stage_duration.labels(stage, outcome)
        for outcome in RUN_OUTCOMES:
            self.pipeline_duration.labels(outcome)
            for trigger in TRIGGERS:
                self.runs.labels(outcome, trigger)
        for source in SOURCES:
            self.events.labels(source)
        for reason in GATE_REASONS:
            self.gate_failures.labels(reason)
        for reason in LOOP_ERROR_REASONS:
            self.loop_errors.labels(reason)

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
        if outcome == "succeeded":
            self.last_success.set(finished_at)

    def event(self, sources: set[str]) -> None:
        for source in sources - {"force"}:  # a modifier of a manual trigger, not a source of its own
            self.events.labels(bounded(source, SOURCES, "manual")).inc()

    def gate_failure(self, kinds: set[str]) -> None:
        reasons = {bounded(_GATE_KIND_REASON.get(kind, kind), GATE_REASONS) for kind in kinds} or {"other"}
        for reason in reasons:
            self.gate_failures.labels(reason).inc()


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
