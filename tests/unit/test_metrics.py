"""The metrics contract: names, bounded labels, what a run and a gate failure change."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.errors import CancelledError, GateRejectedError
from daemon.metrics import Metrics, export_oneshot
from daemon.pipeline import PipelineOutcome
from daemon.progress import MetricsReporter
from handlers.base import StageResult

TRAIN = StageResult("train", "", {"metrics": {"f1_score_weighted": 0.73}})
REGISTER = StageResult("register", "", {"mlflow_run_id": "m", "model_version": "1", "champion": True})


def sample_names(registry: CollectorRegistry) -> set[str]:
    return {s.name for mf in registry.collect() for s in mf.samples}


def test_every_bounded_series_exists_before_anything_happens() -> None:
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
    reporter = MetricsReporter(Metrics(registry), "commit", clock=lambda: 1000.0)
    reporter.stage_finished("r", TRAIN, 12.0)
    reporter.run_finished(PipelineOutcome("r", {"train": TRAIN, "register": REGISTER}, {}, 30.0))
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
    reporter = MetricsReporter(Metrics(registry), "data", clock=lambda: 5.0)
    gate = GateRejectedError("validate", ["a", "b"], kinds={"missing_column", "weird-new-check"})
    reporter.stage_failed("r", "validate", 2.0, gate)
    reporter.stage_failed("r", "train", 1.0, CancelledError("train", "SIGTERM"))
    reporter.run_finished(PipelineOutcome("r", {}, {}, 3.0, "validate", gate))
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
