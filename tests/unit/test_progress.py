"""What a person sees: one line per stage on a terminal; structured events elsewhere."""

from __future__ import annotations

import io
import json

from rich.console import Console

from daemon.adapters.logs import configure_logging
from daemon.core.errors import GateRejectedError
from daemon.core.outcome import PipelineOutcome
from daemon.core.stages import StageResult
from daemon.engine.progress import ConsoleRecorder, LogRecorder

TRAIN = StageResult("train", "weighted F1 0.7311", {"metrics": {"f1_score_weighted": 0.7311}})
REGISTER = StageResult("register", "v3", {"mlflow_run_id": "abc", "model_version": "3", "champion": False})


def test_console_shows_a_line_per_stage_and_the_summary() -> None:
    out = io.StringIO()
    reporter = ConsoleRecorder(Console(file=out, width=120, force_terminal=False))
    reporter.stage_started("r1", "train")
    reporter.stage_finished("r1", TRAIN, 12.5)
    reporter.run_finished(
        PipelineOutcome("r1", {"train": TRAIN, "register": REGISTER}, {"train": 12.5}, 30.0)
    )
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["✓", "train", "12.5", "s", "weighted", "F1", "0.7311"]
    assert "run r1 succeeded in 30.0 s: model v3, weighted F1 0.7311" in lines[1]


def test_console_lists_every_gate_reason() -> None:
    out = io.StringIO()
    reporter = ConsoleRecorder(Console(file=out, width=120, force_terminal=False))
    error = GateRejectedError("validate", ["jest a.test.js: x fails", "drop.csv: column 'text' missing"])
    reporter.stage_failed("r1", "validate", 3.0, error)
    text = out.getvalue()
    assert "GateRejectedError" in text and "x fails" in text and "column 'text' missing" in text


def test_log_reporter_writes_one_canonical_json_line_per_run() -> None:
    out = io.StringIO()
    configure_logging(json_lines=True, stream=out)
    error = GateRejectedError("validate", ["bad labels"])
    reporter = LogRecorder()
    reporter.stage_failed("r9", "validate", 1.25, error)
    reporter.run_finished(PipelineOutcome("r9", {}, {"validate": 1.25}, 2.0, "validate", error))
    failed, finished = (json.loads(line) for line in out.getvalue().splitlines())
    assert failed["event"] == "stage_failed" and failed["reasons"] == ["bad labels"]
    assert (failed["run_id"], failed["stage"], failed["duration_s"]) == ("r9", "validate", 1.25)
    assert finished["event"] == "run_finished" and finished["exit_code"] == 3
    assert finished["outcome"] == "GateRejectedError" and finished["failed_stage"] == "validate"


def test_under_journald_lines_carry_their_syslog_priority() -> None:
    out = io.StringIO()
    configure_logging(json_lines=True, stream=out, syslog_prefix=True)
    LogRecorder().stage_failed("r1", "train", 1.0, GateRejectedError("validate", ["x"]))
    line = out.getvalue().strip()
    assert line.startswith("<3>{") and json.loads(line[3:])["event"] == "stage_failed"


def test_an_up_to_date_run_says_which_run_and_model_and_counts_cache_hits() -> None:
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from daemon.engine.metrics import Metrics
    from daemon.engine.progress import MetricsRecorder

    cached = {
        "train": replace(TRAIN, cached_from="r1", summary="up to date: weighted F1 0.7311 (run r1)"),
        "register": replace(REGISTER, cached_from="r1"),
    }
    outcome = PipelineOutcome("r2", cached, {"train": 0.01, "register": 0.0}, 0.4)
    out = io.StringIO()
    reporter = ConsoleRecorder(Console(file=out, width=160, force_terminal=False))
    reporter.stage_finished("r2", cached["train"], 0.01)
    reporter.run_finished(outcome)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("= train") and "(run r1)" in lines[0]
    assert lines[1].startswith("up to date: run r1, model v3, weighted F1 0.7311; nothing to train")

    registry = CollectorRegistry()
    metrics_reporter = MetricsRecorder(Metrics(registry), clock=lambda: 100.0)
    for result in cached.values():
        metrics_reporter.stage_finished("r2", result, 0.01)
    metrics_reporter.run_finished(outcome)
    assert registry.get_sample_value("retraind_stage_cache_hits_total", {"stage": "train"}) == 1.0
    assert registry.get_sample_value("retraind_stage_cache_hits_total", {"stage": "build"}) == 0.0
    runs = registry.get_sample_value("retraind_runs_total", {"outcome": "up_to_date", "trigger": "manual"})
    assert runs == 1.0

    out = io.StringIO()
    configure_logging(json_lines=True, stream=out)
    LogRecorder().run_finished(outcome)
    finished = json.loads(out.getvalue())
    assert finished["outcome"] == "up_to_date" and finished["summary"] == "up to date: run r1, model v3"
