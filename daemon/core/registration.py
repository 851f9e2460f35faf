"""A registration as the register stage's result, whoever made it: the stage itself, or the outbox
delivering it later (whose result then fills the stage cache under the key the run carried)."""

from __future__ import annotations

from daemon.core.records import Registration
from daemon.core.stages import REGISTER, StageResult

NAME = REGISTER
KEY_TAG = "retraind.cache_key.register"  # lets a registration sent later from the outbox fill the cache


def registered(reg: Registration, model_name: str) -> StageResult:
    """The stage's result for a registration, whether made now or delivered later by the outbox."""
    challenger = f" (challenger: {reg.promoted_reason})" if reg.promoted_reason else ""
    alias = " (champion)" if reg.champion else challenger
    summary = f"MLflow run {reg.run_id[:8]}, {model_name} v{reg.model_version}{alias}"
    outputs = {
        "mlflow_run_id": reg.run_id,
        "model_version": reg.model_version,
        "champion": reg.champion,
        "queued": False,
        "reason": reg.promoted_reason,
        "previous_champion": reg.previous_champion,
        "previous_champion_f1": reg.previous_champion_f1,
        "experiment_id": reg.experiment_id,
    }
    return StageResult(NAME, summary, outputs)
