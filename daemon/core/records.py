"""What a pipeline run leaves in MLflow, and what registering it gave back: values only (the MLflow
adapter records them; the outbox keeps them while MLflow is away)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The MLflow run tag naming the pipeline run: one MLflow run per pipeline run, however often the
# outbox sends it, and how a registered version finds its way back to the run that trained it.
RUN_ID_TAG = "retraind.run_id"
# The provenance tags more than one module reads or writes (handlers/register.py writes them all).
COMMIT_TAG, DIRTY_TAG, IMAGE_TAG = "retraind.git.commit", "retraind.git.dirty", "retraind.image.id"
OUTCOME_TAG, FAILURE_TAG = "retraind.outcome", "retraind.failure"
SLURM_JOBS_TAG = "retraind.slurm.jobs"  # the Slurm job of each stage container: "train=1234,..."
MODEL_SHA256_TAG, PREDICTIONS_TAG = "retraind.model.sha256", "retraind.predictions.sha256"
# The per-version report the tracker logs with every registered version (a page for a browser), and
# its figures as JSON next to it.
REPORT_ARTIFACT, REPORT_FIGURES = "report/index.html", "report/report.json"
# train.py's identity.json keys -> the tags register writes them as
IDENTITY_TAGS = {"model_sha256": MODEL_SHA256_TAG, "predictions_sha256": PREDICTIONS_TAG}


@dataclass(frozen=True)
class RunRecord:
    """What one pipeline run leaves in MLflow."""

    experiment: str
    run_name: str
    status: str  # FINISHED or FAILED
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    artifact_dirs: Mapping[str, Path] = field(default_factory=dict)  # artifact path -> local dir
    model_dir: Path | None = None  # logged under "model" and registered
    finished_ms: int = 0  # when the pipeline produced the metrics (kept while the outbox waits)
    # The figures of the version's report that need no champion (JSON values only: the outbox
    # keeps them); empty: no report.
    report: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    run_id: str
    model_version: str | None
    champion: bool  # this version is now the champion
    promoted_reason: str = ""  # the gate's reason for promoting it, or for leaving it challenger
    previous_champion: str | None = None  # the champion the gate measured it against
    previous_champion_f1: float | None = None  # that champion's weighted F1
    experiment_id: str = ""  # the MLflow experiment of run_id (for links to the MLflow UI)


@dataclass(frozen=True)
class Delivery:
    run_id: str
    registration: Registration | None  # None: still waiting
    error: str = ""
