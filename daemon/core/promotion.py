"""The promotion gate and its history: pure decisions about which model version is champion."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from daemon.core.records import PREDICTIONS_TAG

F1_METRIC = "f1_score_weighted"
ACTIONS = ("gate", "promote", "rollback")  # the ways a version becomes champion
HISTORY_PREFIX = "retraind.history."  # registered-model tags: one JSON HistoryEntry each
DATA_SHA256_TAG = "retraind.data.sha256"  # the run tag of the data manifest's hash (handlers/register.py)


@dataclass(frozen=True)
class GatePolicy:
    """How the register stage decides; shares in 0..1 of weighted F1."""

    tolerance: float = 0.0  # a candidate this far below the champion still replaces it
    floor: float = 0.0  # a candidate must be above this, champion or not
    mirror_stages: bool = True  # also move the (deprecated) stages: champion Production, old Archived


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    against: str | None = None  # the champion it was measured against (None: there was none)
    against_f1: float | None = None  # that champion's weighted F1


@dataclass(frozen=True)
class ModelIdentity:
    """What a version does, as its run's tags say: the hash of its predictions on the test split,
    and the hash of the data (manifest) it was trained and tested on."""

    predictions_sha256: str
    data_sha256: str

    @classmethod
    def of(cls, tags: Mapping[str, str]) -> ModelIdentity | None:
        """From a run's tags; None when either is missing (a run from before, or not retraind's)."""
        predictions, data = str(tags.get(PREDICTIONS_TAG, "")), str(tags.get(DATA_SHA256_TAG, ""))
        return cls(predictions, data) if predictions and data else None


def decide(
    candidate_f1: float,
    champion_f1: float | None,
    tolerance: float,
    floor: float,
    champion_version: str = "",
    *,
    candidate: ModelIdentity | None = None,
    champion_identity: ModelIdentity | None = None,
) -> Decision:
    """Promote iff the candidate is above the floor, is not the champion's model over again
    (the same predictions on the same data: a retraining of the same inputs, or a second daemon's
    training of them), and is not worse than the champion minus tolerance."""
    if math.isnan(candidate_f1):
        return Decision(False, "no weighted F1 recorded for this version")
    if not candidate_f1 > floor:
        return Decision(False, f"weighted F1 {candidate_f1:.4f} is not above the floor {floor:.4f}")
    if not champion_version and champion_f1 is None:
        return Decision(True, "no champion yet")
    champion = f"champion v{champion_version}" if champion_version else "the champion"
    if candidate is not None and candidate == champion_identity:
        return Decision(
            False,
            f"the same model as {champion}: identical predictions (sha256"
            f" {candidate.predictions_sha256[:12]}) on the same data (sha256 {candidate.data_sha256[:12]})",
        )
    if champion_f1 is None or math.isnan(champion_f1):
        return Decision(True, f"{champion} has no weighted F1 to compare with")
    bar = f"{champion}'s {champion_f1:.4f} - tolerance {tolerance:.4f}"
    if candidate_f1 >= champion_f1 - tolerance:
        return Decision(True, f"weighted F1 {candidate_f1:.4f} >= {bar}")
    return Decision(False, f"weighted F1 {candidate_f1:.4f} < {bar}")


@dataclass(frozen=True)
class HistoryEntry:
    """One change of champion: which version, replacing which, how, when, by whom and why."""

    version: str
    previous: str | None  # the champion it replaced; None for the first one
    action: str  # one of ACTIONS
    at: str  # UTC, ISO 8601
    by: str  # a retraind run ID (the gate) or "user@host" (a person)
    reason: str
    mlflow_run_id: str = ""  # the MLflow run that produced the version

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"history action must be one of {', '.join(ACTIONS)}, got {self.action!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HistoryEntry:
        """Raises ValueError on anything that is not an entry written by to_json."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"history entry must be a JSON object, got {text[:80]!r}")
        try:
            previous = data["previous"]
            return cls(
                version=str(data["version"]),
                previous=None if previous is None else str(previous),
                action=str(data["action"]),
                at=str(data["at"]),
                by=str(data["by"]),
                reason=str(data["reason"]),
                mlflow_run_id=str(data.get("mlflow_run_id", "")),
            )
        except KeyError as e:
            raise ValueError(f"history entry lacks {e}") from e


def history_key(sequence: int, nonce: str) -> str:
    """Sorts in the order written; the nonce keeps two concurrent writers of one sequence apart."""
    return f"{HISTORY_PREFIX}{sequence:06d}-{nonce}"


def parse_history(tags: Mapping[str, str]) -> tuple[list[HistoryEntry], list[str]]:
    """The entries oldest first, and the keys of history tags that could not be read."""
    entries, bad = [], []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        try:
            entries.append(HistoryEntry.from_json(tags[key]))
        except ValueError:
            bad.append(key)
    return entries, bad


def rollback_target(history: Sequence[HistoryEntry], current: str) -> str | None:
    """The champion before `current`: replay the history as a stack (gate/promote push, rollback pops).

    Rolling back twice walks further back instead of toggling between the last two versions.
    A champion set by hand outside retraind counts as the newest one.
    """
    stack: list[str] = []
    for entry in history:
        if entry.action == "rollback":
            while stack and stack[-1] != entry.version:
                stack.pop()
            if not stack:
                stack.append(entry.version)
        elif not stack or stack[-1] != entry.version:
            stack.append(entry.version)
    if not stack or stack[-1] != current:
        stack.append(current)
    earlier = [v for v in stack[:-1] if v != current]
    return earlier[-1] if earlier else None


@dataclass(frozen=True)
class VersionRow:
    """One registered model version as `retraind models` shows it."""

    version: str
    aliases: tuple[str, ...]
    current_stage: str
    f1: float | None
    mlflow_run_id: str
    retraind_run_id: str
    created: str  # UTC, ISO 8601
    promotion_reason: str


def models_json(name: str, rows: Sequence[VersionRow], history: Sequence[HistoryEntry]) -> dict[str, Any]:
    """The JSON form: versions newest first, history newest first."""
    return {
        "model": name,
        "versions": [asdict(r) | {"aliases": list(r.aliases)} for r in rows],
        "history": [asdict(h) for h in reversed(history)],
    }


def _cells(r: VersionRow) -> tuple[str, ...]:
    return (
        f"v{r.version}",
        ",".join(r.aliases) or "-",
        r.current_stage,
        "-" if r.f1 is None else f"{r.f1:.4f}",
        r.mlflow_run_id[:8] or "-",
        r.retraind_run_id or "-",
        r.created[:19].replace("T", " "),
        r.promotion_reason or "-",
    )


def render_models(name: str, rows: Sequence[VersionRow], history: Sequence[HistoryEntry]) -> str:
    """A table of the versions (newest first), then the promotion history (newest first)."""
    if not rows:
        return f"{name}: no registered versions yet"
    header = ("version", "aliases", "stage", "F1", "MLflow run", "retraind run", "created (UTC)", "reason")
    table = [header, *(_cells(r) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [f"{name}: {len(rows)} version(s)"]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    lines.append("")
    lines.append("promotion history, newest first:" if history else "promotion history: none yet")
    moves = [f"v{h.version}" + (f" (was v{h.previous})" if h.previous else "") for h in history]
    width = max((len(m) for m in moves), default=0)
    for h, move in reversed(list(zip(history, moves, strict=True))):
        when = h.at[:19].replace("T", " ")
        lines.append(f"  {when}  {h.action:<8}  {move:<{width}}  by {h.by}: {h.reason}")
    return "\n".join(lines)
