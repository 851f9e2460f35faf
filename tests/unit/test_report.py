"""The report of a registered version: its figures (register on the host) and its page (core/report)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon.core.records import Registration
from daemon.core.report import PREDICTIONS, comparison, render_report, version_figures
from daemon.core.stages import Ports, RunContext
from daemon.engine.pipeline import run_stages
from daemon.state.outbox import record_from_json, record_to_json
from handlers.register import class_figures, data_summary
from handlers.registry import STAGES
from tests.fakes import FakeTracker, RecordingReporter
from tests.htmlpage import Page, read_page
from tests.unit.test_pipeline import containers, train_script

LABELS = ("negative", "neutral", "positive")
# Six test rows: 4 right. By hand, per class (precision, recall, F1, support):
# negative (1, 2/3, 0.8, 3), neutral (1/2, 1, 2/3, 1), positive (1/2, 1/2, 1/2, 2).
TRUTH = ["negative", "negative", "negative", "positive", "positive", "neutral"]
PREDICTED = ["negative", "negative", "positive", "positive", "neutral", "neutral"]
BY_HAND = {
    "precision_weighted": (1 * 3 + 0.5 * 1 + 0.5 * 2) / 6,
    "recall_weighted": 4 / 6,
    "f1_score_weighted": (0.8 * 3 + 2 / 3 * 1 + 0.5 * 2) / 6,
    "accuracy": 4 / 6,
}
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
IMAGE = "data:image/png;base64,iVBORw0KGgogZmFrZSBpbWFnZSBieXRlcw=="  # PNG in a data URI
HOSTILE_LABEL = '<script>alert("label")</script>'
HOSTILE_FILE = '"><img src=x onerror=alert(1)>.csv'
HOSTILE_SUBJECT = "Fix </p><script>fetch('//evil')</script> & <b>bold</b>"


def write_predictions(path: Path, truth: list[str], predicted: list[str]) -> Path:
    """As train.py writes them: JSON lines, non-ASCII (U+0085, U+2028 too) unescaped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "file": "a.csv",
            "line": i + 2,
            "text": f"text {i}\x85 and\u2028more",
            "sentiment": t,
            "predicted": p,
        }
        for i, (t, p) in enumerate(zip(truth, predicted, strict=True))
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_class_figures_are_recomputed_from_the_recorded_test_split(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / PREDICTIONS, TRUTH, PREDICTED)
    figures = class_figures(predictions, LABELS, BY_HAND)
    rows = {r["label"]: r for r in figures["per_class"]}
    assert [r["label"] for r in figures["per_class"]] == list(LABELS)  # the configured order
    expected = {
        "negative": (1.0, 2 / 3, 0.8, 3),
        "neutral": (0.5, 1.0, 2 / 3, 1),
        "positive": (0.5, 0.5, 0.5, 2),
    }
    for label, (p, r, f1, n) in expected.items():
        got = rows[label]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1), abs=1e-12)
        assert got["support"] == n
    assert figures["confusion_matrix"] == [[2, 0, 1], [0, 1, 0], [0, 1, 1]]  # rows true, columns predicted
    assert figures["test_rows"] == 6 == sum(r["support"] for r in figures["per_class"])
    assert figures["problem"] is None
    recomputed = figures["recomputed"]
    assert recomputed.pop("agrees") is True
    assert recomputed == pytest.approx(BY_HAND, abs=1e-12)
    json.dumps(figures, allow_nan=False)  # plain JSON values, no numpy types


def test_figures_agree_with_the_recorded_metrics_only_when_they_match(tmp_path: Path) -> None:
    predictions = write_predictions(tmp_path / PREDICTIONS, TRUTH, PREDICTED)
    assert (
        class_figures(predictions, LABELS, {**BY_HAND, "f1_score_weighted": 0.9})["recomputed"]["agrees"]
        is False
    )
    no_accuracy = {k: v for k, v in BY_HAND.items() if k != "accuracy"}
    assert (
        class_figures(predictions, LABELS, no_accuracy)["recomputed"]["agrees"] is True
    )  # checks what it has
    no_f1 = {k: v for k, v in BY_HAND.items() if k != "f1_score_weighted"}
    assert class_figures(predictions, LABELS, no_f1)["recomputed"]["agrees"] is False  # but F1 it must have


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "the run recorded no test_predictions.jsonl"),
        ('{"sentiment": "negative"', "test_predictions.jsonl cannot be scored: JSONDecodeError"),
        (
            '{"sentiment": "negative", "label": "negative"}',
            "test_predictions.jsonl cannot be scored: KeyError",
        ),
        ('{"sentiment": "x", "predicted": "y"}', "test_predictions.jsonl cannot be scored: ValueError"),
    ],
)
def test_a_run_without_usable_predictions_has_no_class_figures_and_says_why(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / PREDICTIONS
    if content is not None:
        path.write_text(content + "\n", encoding="utf-8")
    figures = class_figures(path, LABELS, BY_HAND)
    assert figures.pop("problem").startswith(problem)
    assert figures == {"per_class": [], "confusion_matrix": [], "test_rows": None, "recomputed": None}


def test_data_summary_takes_the_gate_s_figures_and_drift() -> None:
    counts = {
        "rows": 120,
        "empty_after_cleaning": 2,
        "latin1_rows": 1,
        "duplicate_rows": 4,
        "conflicting_rows": 0,
    }
    report = {
        **counts,
        "passed": True,
        "files": ["a.csv", "b.csv"],
        "label_counts": {"negative": 70, "positive": 50},
        "drift": {"label_psi": 0.0123, "length_psi": 0.2, "reference_rows": 99},
        "warnings": [{"check": "unexpected_columns", "message": "a.csv: unexpected columns ignored: x"}],
    }
    assert data_summary(report) == {
        **counts,
        "files": ["a.csv", "b.csv"],
        "label_counts": {"negative": 70, "positive": 50},
        "label_psi": 0.0123,
        "length_psi": 0.2,
    }
    assert data_summary({})["rows"] is None and data_summary({})["label_psi"] is None


def test_the_comparison_names_the_champion_and_the_difference() -> None:
    found = comparison(0.72, "3", 0.70, True, "weighted F1 0.7200 >= champion v3's 0.7000 - tolerance 0.0000")
    assert (found["champion_version"], found["champion_f1"], found["promoted"]) == ("3", 0.70, True)
    assert found["delta"] == pytest.approx(0.02) and found["delta_percent"] == pytest.approx(2 / 0.7)
    first = comparison(0.72, None, None, True, "no champion yet")
    assert (first["champion_version"], first["delta"], first["delta_percent"]) == (None, None, None)
    assert comparison(math.nan, "1", 0.7, False, "no weighted F1")["delta"] is None
    assert comparison(0.5, "1", 0.0, True, "x")["delta_percent"] is None  # no percent of zero


def registered_figures(ctx: RunContext, with_predictions: bool = True) -> dict[str, Any]:
    """A run through every handler (scripted containers) whose train recorded the six rows above."""

    def train(job: Any) -> Any:
        result = train_script(job)
        out = next(m.host for m in job.mounts if m.container == "/out")
        (out / "artifacts" / "metrics.json").write_text(json.dumps(BY_HAND))
        if with_predictions:
            write_predictions(out / "artifacts" / PREDICTIONS, TRUTH, PREDICTED)
        return result

    tracker = FakeTracker()
    outcome = run_stages(
        ctx, list(STAGES.values()), Ports(containers(train=train), tracker), RecordingReporter()
    )
    assert outcome.ok
    (record,) = tracker.records
    assert record_from_json(record_to_json(record, "m")) == (record, "m")  # the outbox keeps the report
    assert record.report["metrics"] == record.metrics
    assert record.report["provenance"] == {"tags": dict(record.tags), "params": dict(record.params)}
    assert record.report["data"]["rows"] == 100  # the validate stage's data report (tests.unit.test_pipeline)
    return dict(record.report)


def test_register_computes_the_report_figures_before_recording(ctx: RunContext) -> None:
    figures = registered_figures(ctx)
    assert figures["labels"] == list(LABELS)
    assert figures["recomputed"]["agrees"] is True
    assert [r["support"] for r in figures["per_class"]] == [3, 1, 2]
    assert figures["run"] == {
        "retraind_run_id": "r1",
        "experiment": ctx.settings.experiment,
        "trigger": "manual",
        "commit": "c" * 40,
        "subject": "",
    }
    assert figures["provenance"]["tags"]["retraind.git.commit"] == "c" * 40


def page_of(figures: dict[str, Any], png: bytes | None = PNG, **registration: Any) -> Page:
    """The page of version 2 of model "sentiment", registered as `registration` says."""
    reg = Registration(**({"run_id": "mlflow-1", "model_version": "2", "champion": False} | registration))
    f1 = figures["metrics"]["f1_score_weighted"]
    return read_page(render_report(version_figures(figures, reg, "sentiment", f1), png))


def test_the_page_shows_the_figures_to_four_decimals(ctx: RunContext) -> None:
    figures = registered_figures(ctx)
    reason = "weighted F1 0.6778 < champion v1's 0.7000"
    page = page_of(figures, promoted_reason=reason, previous_champion="1", previous_champion_f1=0.7)
    assert page.table_with("precision")[1:] == [
        ["negative", "1.0000", "0.6667", "0.8000", "3"],
        ["neutral", "0.5000", "1.0000", "0.6667", "1"],
        ["positive", "0.5000", "0.5000", "0.5000", "2"],
        ["weighted", "0.7500", "0.6667", "0.6778", "6"],
    ]
    against = page.table_with("this version")
    assert against[0][2] == "champion v1"
    assert against[1] == ["f1_score_weighted", "0.6778", "0.7000", "-0.0222", "-3.17"]
    assert page.table_with("true \\ predicted")[1:] == [
        ["negative", "2", "0", "1"],
        ["neutral", "0", "1", "0"],
        ["positive", "0", "1", "1"],
    ]
    metrics = {row[0]: row[1] for row in page.table_with("value")[1:]}
    assert metrics["accuracy"] == "0.6667" and metrics["f1_score_weighted"] == "0.6778"
    assert page.images() == [IMAGE]
    assert ["retraind.git.commit", "c" * 40] in page.tables[-2]  # provenance
    assert any(reason in text for text in page.text)


def test_without_predictions_image_or_champion_the_page_says_so(ctx: RunContext) -> None:
    figures = registered_figures(ctx, with_predictions=False)
    page = page_of(figures, png=None, champion=True, promoted_reason="no champion yet")
    assert page.images() == []
    assert "No per-class figures: the run recorded no test_predictions.jsonl." in page.text
    assert page.table_with("this version")[1][2:] == ["-", "-", "-"]


def test_every_value_is_escaped(ctx: RunContext) -> None:
    figures = registered_figures(replace(ctx, git=replace(ctx.git, subject=HOSTILE_SUBJECT)))
    assert figures["run"]["subject"] == HOSTILE_SUBJECT
    figures["labels"] = [HOSTILE_LABEL, "neutral", "positive"]
    figures["per_class"][0]["label"] = HOSTILE_LABEL
    figures["data"]["files"] = [HOSTILE_FILE]
    figures["warnings"] = [f"{HOSTILE_FILE}: unexpected columns ignored: <b>"]
    figures["provenance"]["tags"]["retraind.git.branch"] = "</code></td></tr></table><script>x()</script>"
    page = page_of(figures, promoted_reason="<i>reason</i>")
    assert [tag for tag, _ in page.tags if tag in ("script", "i", "b")] == []
    assert page.images() == [IMAGE]  # only ours
    for hostile in (HOSTILE_LABEL, HOSTILE_FILE, ": " + HOSTILE_SUBJECT):
        assert hostile in page.text  # shown as text, whole
    assert page.table_with("precision")[1][0] == HOSTILE_LABEL
    assert ["retraind.git.branch", "</code></td></tr></table><script>x()</script>"] in page.tables[-2]
