"""The metrics contract: names, bounded labels, what a run and a gate failure change."""

from __future__ import annotations

import itertools
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from daemon.core.errors import CancelledError, GateRejectedError, StageFailedError
from daemon.core.outcome import PipelineOutcome
from daemon.core.stages import StageResult
from daemon.engine.metrics import (
    DAEMON_RUN_OUTCOMES,
    DAEMON_TRIGGERS,
    RUN_OUTCOMES,
    STAGES,
    TRIGGERS,
    Metrics,
    export_oneshot,
    start_metrics_server,
)
from daemon.engine.progress import MetricsRecorder
from tests.integration.test_dashboards import (
    CONTRACT,
    MATCHER,
    SELECTOR,
    TARGET_LABELS,
    contract_metric,
    promql_expressions,
    rule_expressions,
)

TRAIN = StageResult("train", "", {"metrics": {"f1_score_weighted": 0.73}})
PROMETHEUS_HEADERS = {  # what Prometheus 2.42 asks for
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
REGISTER = StageResult("register", "", {"mlflow_run_id": "m", "model_version": "1", "champion": True})


def sample_names(registry: CollectorRegistry) -> set[str]:
    return {s.name for mf in registry.collect() for s in mf.samples}


def test_the_series_panels_and_alerts_read_exist_before_anything_happens() -> None:
    registry = CollectorRegistry()
    Metrics(registry, version="1.2.3")
    v = registry.get_sample_value
    assert v("retraind_stage_duration_seconds_count", {"stage": "train", "outcome": "success"}) == 0
    assert v("retraind_runs_total", {"outcome": "gate_rejected", "trigger": "data"}) == 0
    assert v("retraind_gate_failures_total", {"reason": "missing_column"}) == 0
    assert v("retraind_build_info", {"version": "1.2.3"}) == 1
    assert {
        "retraind_events_coalesced_total",
        "retraind_queue_depth",
        "retraind_tracking_backlog",
        "retraind_last_success_timestamp_seconds",
    } <= sample_names(registry)


def test_a_successful_run_sets_f1_champion_and_timestamps() -> None:
    registry = CollectorRegistry()
    reporter = MetricsRecorder(Metrics(registry), clock=lambda: 1000.0)
    reporter.stage_finished("r", TRAIN, 12.0)
    outcome = PipelineOutcome("r", {"train": TRAIN, "register": REGISTER}, {}, 30.0, trigger="commit")
    reporter.run_finished(outcome)
    v = registry.get_sample_value
    assert (
        v("retraind_stage_duration_seconds_bucket", {"stage": "train", "outcome": "success", "le": "30.0"})
        == 1
    )
    assert v("retraind_runs_total", {"outcome": "succeeded", "trigger": "commit"}) == 1
    assert (v("retraind_last_run_f1"), v("retraind_champion_f1")) == (0.73, 0.73)
    assert v("retraind_last_success_timestamp_seconds") == 1000.0


def test_gate_failures_count_by_reason_and_cancel_is_its_own_outcome() -> None:
    registry = CollectorRegistry()
    reporter = MetricsRecorder(Metrics(registry), clock=lambda: 5.0)
    gate = GateRejectedError("validate", ["a", "b"], kinds={"missing_column", "weird-new-check"})
    reporter.stage_failed("r", "validate", 2.0, gate)
    reporter.stage_failed("r", "train", 1.0, CancelledError("train", "SIGTERM"))
    reporter.run_finished(PipelineOutcome("r", {}, {}, 3.0, "validate", gate, "data"))
    v = registry.get_sample_value
    assert v("retraind_gate_failures_total", {"reason": "missing_column"}) == 1
    assert v("retraind_gate_failures_total", {"reason": "other"}) == 1  # unknown kinds fold into "other"
    assert v("retraind_stage_duration_seconds_count", {"stage": "train", "outcome": "cancelled"}) == 1
    assert v("retraind_runs_total", {"outcome": "gate_rejected", "trigger": "data"}) == 1
    assert v("retraind_last_success_timestamp_seconds") == 0


def test_restart_restores_gauges_from_the_journal() -> None:
    registry = CollectorRegistry()
    Metrics(registry).restore({"last_run_f1": 0.7, "champion_f1": 0.72, "last_success_finished_at": 99.0})
    v = registry.get_sample_value
    assert (v("retraind_last_run_f1"), v("retraind_champion_f1")) == (0.7, 0.72)
    assert v("retraind_last_success_timestamp_seconds") == 99.0


def test_oneshot_run_leaves_a_textfile_for_node_exporter(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert export_oneshot(registry, "", str(tmp_path)) == [f"{tmp_path}/retraind.prom"]
    assert "retraind_build_info" in (tmp_path / "retraind.prom").read_text()


def test_fine_grained_gate_checks_fold_into_bounded_reasons() -> None:
    registry = CollectorRegistry()
    Metrics(registry).gate_failure({"drift_labels", "drift_lengths", "nul_bytes", "class_too_small"})
    v = registry.get_sample_value
    assert v("retraind_gate_failures_total", {"reason": "drift"}) == 1  # one rejection, one count
    assert v("retraind_gate_failures_total", {"reason": "binary"}) == 1
    assert v("retraind_gate_failures_total", {"reason": "class_balance"}) == 1


def test_the_loop_and_disk_series_exist_from_the_start() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    v = registry.get_sample_value
    assert v("retraind_loop_errors_total", {"reason": "no_space"}) == 0
    assert v("retraind_loop_errors_total", {"reason": "other"}) == 0
    assert v("retraind_state_no_space") == 0 and v("retraind_journal_held_writes") == 0


def stage_children(registry: CollectorRegistry) -> set[tuple[str, str]]:
    return {
        (s.labels["stage"], s.labels["outcome"])
        for mf in registry.collect()
        for s in mf.samples
        if s.name == "retraind_stage_duration_seconds_count"
    }


def test_only_the_series_read_before_their_first_event_start_at_zero() -> None:
    """Issue 15: a histogram child is 18 samples a scrape; the ones nothing reads appear when they happen."""
    registry = CollectorRegistry()
    reporter = MetricsRecorder(Metrics(registry), clock=lambda: 5.0)
    v = registry.get_sample_value
    assert stage_children(registry) == {(stage, "success") for stage in STAGES}
    assert v("retraind_runs_total", {"outcome": "interrupted", "trigger": "commit"}) is None  # journal only
    assert v("retraind_runs_total", {"outcome": "succeeded", "trigger": "ci"}) is None  # one-shot only
    assert v("retraind_pipeline_duration_seconds_count", {"outcome": "interrupted"}) is None
    assert v("retraind_pipeline_duration_seconds_count", {"outcome": "cancelled"}) == 0
    reporter.stage_failed("r", "train", 1.0, StageFailedError("train", 1, "boom"))
    assert v("retraind_stage_duration_seconds_count", {"stage": "train", "outcome": "failure"}) == 1
    assert stage_children(registry) == {(stage, "success") for stage in STAGES} | {("train", "failure")}


def test_every_series_the_dashboards_and_alerts_select_exists_from_the_start() -> None:
    """rate() and increase() miss the first increment of a series born with it: each counter or histogram
    selector of a panel or a rule, with each value its matchers name, has a series at 0 from the start
    (in the daemon's registry or retraind serve's)."""
    from daemon.adapters.serve_front import ServeMetrics

    registry = CollectorRegistry()
    Metrics(registry)
    serve = ServeMetrics(registry)
    serve.serving("1")  # a version's series start when it starts serving,
    serve.shadowing("2")  # and a challenger's when it goes into shadow
    fresh = [(s.name, s.labels, s.value) for mf in registry.collect() for s in mf.samples]
    checked = 0
    for where, expr in promql_expressions() + rule_expressions():
        for series, matchers in SELECTOR.findall(expr):
            if CONTRACT[contract_metric(series)][0] not in ("counter", "histogram"):
                continue
            wanted = [
                (label, value.split("|") if op == "=~" else [value])
                for label, op, value in MATCHER.findall(matchers)
                if op in ("=", "=~") and label not in TARGET_LABELS
            ]
            for combination in itertools.product(*(values for _, values in wanted)):
                labels = dict(zip((label for label, _ in wanted), combination, strict=True))
                found = [
                    value for name, have, value in fresh if name == series and labels.items() <= have.items()
                ]
                assert found and set(found) == {0.0}, f"{where}: {series}{labels} does not start at 0"
                checked += 1
    assert checked >= 8


def test_preinitialised_outcomes_and_triggers_are_bounded_values() -> None:
    assert set(DAEMON_RUN_OUTCOMES) < set(RUN_OUTCOMES) and set(DAEMON_TRIGGERS) < set(TRIGGERS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_server_answers_prometheus_in_text_format_uncompressed() -> None:
    registry = CollectorRegistry()
    reporter = MetricsRecorder(Metrics(registry), clock=lambda: 1000.0)
    reporter.run_finished(PipelineOutcome("r", {"train": TRAIN}, {}, 30.0, trigger="commit"))
    port = free_port()
    httpd, thread = start_metrics_server(port, "127.0.0.1", registry, poll_interval_s=0.05)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=PROMETHEUS_HEADERS)
        with urllib.request.urlopen(request, timeout=10) as response:
            content_type, encoding = response.headers["Content-Type"], response.headers["Content-Encoding"]
            body = response.read().decode()
        assert (content_type.split(";")[0], encoding) == ("text/plain", None)
        assert 'retraind_runs_total{outcome="succeeded",trigger="commit"} 1.0\n' in body
        assert "# EOF" not in body  # not OpenMetrics
        assert thread.daemon and thread.is_alive()
        with pytest.raises(OSError):  # the port is taken: app.py turns this into a ConfigError
            start_metrics_server(port, "127.0.0.1", CollectorRegistry())
    finally:
        httpd.shutdown()
        httpd.server_close()
    thread.join(timeout=10)
    assert not thread.is_alive()
