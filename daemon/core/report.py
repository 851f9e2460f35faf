"""The report of one registered version: its figures against the champion's, and the page that shows them.

The register stage computes the figures that need no champion (``RunRecord.report``); the tracker
adds the version and the comparison once the promotion gate has decided (`version_figures`), and
logs both the figures (JSON) and the page (`render_report`: self-contained HTML, the confusion
matrix inline) with the version's MLflow run.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.core.records import Registration

REPORT_FORMAT = 1  # report.json's "format": bump it when a key changes meaning
# What the report reads of train's artifacts (scripts/train.py writes both; the page does without)
PREDICTIONS, CONFUSION_IMAGE = "test_predictions.jsonl", "confusion_matrix.png"
TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "report.html.j2"


def comparison(
    candidate_f1: float, against: str | None, against_f1: float | None, promoted: bool, reason: str
) -> dict[str, Any]:
    """The candidate's weighted F1 against the champion's the gate measured it against (if any)."""
    delta = percent = None
    if against_f1 is not None and not math.isnan(against_f1) and not math.isnan(candidate_f1):
        delta = candidate_f1 - against_f1
        percent = delta / against_f1 * 100 if against_f1 else None
    return {
        "candidate_f1": candidate_f1,
        "champion_version": against,
        "champion_f1": against_f1,
        "delta": delta,
        "delta_percent": percent,
        "promoted": promoted,
        "reason": reason,
    }


def version_figures(
    figures: Mapping[str, Any], reg: Registration, model_name: str, candidate_f1: float
) -> dict[str, Any]:
    """The register stage's figures, completed with the version and the gate's comparison."""
    version = {
        "model_name": model_name,
        "version": reg.model_version,
        "champion": reg.champion,
        "mlflow_run_id": reg.run_id,
        "experiment_id": reg.experiment_id,
    }
    gate = comparison(
        candidate_f1, reg.previous_champion, reg.previous_champion_f1, reg.champion, reg.promoted_reason
    )
    return {"format": REPORT_FORMAT, **figures, "version": version, "comparison": gate}


def _number(value: Any, places: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{places}f}"


def _signed(value: Any, places: int = 4) -> str:
    return "-" if value is None else f"{value:+.{places}f}"


@functools.cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = _number
    env.filters["signed"] = _signed
    return env.from_string(TEMPLATE.read_text(encoding="utf-8"))


def render_report(figures: Mapping[str, Any], confusion_png: bytes | None = None) -> str:
    """The page for a browser: every value escaped, numbers to 4 decimals, the image as a data URI."""
    image = base64.b64encode(confusion_png).decode("ascii") if confusion_png else None
    return str(_template().render(f=figures, confusion_png=image))
