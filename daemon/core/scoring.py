"""What a scoring request says, checked: the texts to classify, or a client error saying what is wrong.

Pure and standard library only: `retraind serve`'s model process imports it inside the champion's
own image (daemon/container/serve_backend.py), and the host's tests import it as it is.

Two request bodies are accepted:
- `POST /predict`: `{"texts": ["...", ...]}`;
- `POST /invocations`, MLflow's scoring protocol, so existing clients work unchanged:
  `{"dataframe_split": {"columns": ["text"], "data": [["..."], ...]}}`,
  `{"dataframe_records": [{"text": "..."}, ...]}`, or `{"inputs": ...}` with a list of texts, a list
  of records or `{"text": [...]}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COLUMN = "text"  # the model's one input column (scripts/train.py's signature)
MAX_BODY_BYTES = 1024 * 1024
MAX_TEXTS = 1000
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "inputs")


class BadRequest(ValueError):
    """A client error (4xx): the status and a message saying what was wrong and what is expected."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = MAX_BODY_BYTES
    max_texts: int = MAX_TEXTS


def decode_json(body: bytes, limits: Limits = Limits()) -> Any:
    if len(body) > limits.max_body_bytes:
        raise BadRequest(f"body of {len(body)} bytes is over the {limits.max_body_bytes}-byte limit", 413)
    if not body.strip():
        raise BadRequest("empty body: send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body is not UTF-8 (byte {e.start}): send JSON in UTF-8") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from e


def predict_texts(body: bytes, limits: Limits = Limits()) -> list[str]:
    """The texts of a `/predict` body."""
    doc = decode_json(body, limits)
    if not isinstance(doc, dict) or "texts" not in doc:
        raise BadRequest('expected a JSON object {"texts": ["...", ...]}')
    return _texts(doc["texts"], "texts", limits)


def invocation_texts(body: bytes, limits: Limits = Limits()) -> list[str]:
    """The texts of an `/invocations` body in any of MLflow's three JSON input shapes."""
    doc = decode_json(body, limits)
    keys = [k for k in MLFLOW_KEYS if isinstance(doc, dict) and k in doc]
    if len(keys) != 1:
        raise BadRequest(f"expected a JSON object with exactly one of {', '.join(MLFLOW_KEYS)}")
    value = doc[keys[0]]
    if keys[0] == "dataframe_split":
        return _split(value, limits)
    if keys[0] == "dataframe_records":
        return _records(value, "dataframe_records", limits)
    return _inputs(value, limits)


def _split(value: Any, limits: Limits) -> list[str]:
    if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
        raise BadRequest('dataframe_split: expected {"columns": ["text"], "data": [["..."], ...]}')
    columns = value["columns"]
    if COLUMN not in columns:
        raise BadRequest(f"dataframe_split: missing column {COLUMN!r} (columns given: {columns})")
    at = columns.index(COLUMN)
    rows = value.get("data")
    if not isinstance(rows, list):
        raise BadRequest("dataframe_split: data must be a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadRequest(f"dataframe_split: row {i} is not a list of {len(columns)} values")
    return _texts([row[at] for row in rows], "dataframe_split.data", limits)


def _records(value: Any, where: str, limits: Limits) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f'{where}: expected a list of records [{{"{COLUMN}": "..."}}, ...]')
    for i, record in enumerate(value):
        if not isinstance(record, dict) or COLUMN not in record:
            raise BadRequest(f"{where}: record {i} has no {COLUMN!r} field")
    return _texts([record[COLUMN] for record in value], where, limits)


def _inputs(value: Any, limits: Limits) -> list[str]:
    if isinstance(value, dict):
        if COLUMN not in value:
            raise BadRequest(f"inputs: missing column {COLUMN!r} (columns given: {sorted(value)})")
        return _texts(value[COLUMN], f"inputs.{COLUMN}", limits)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _records(value, "inputs", limits)
    return _texts(value, "inputs", limits)


def _texts(value: Any, where: str, limits: Limits) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(f"{where}: expected a list of strings")
    if not value:
        raise BadRequest(f"{where}: the list is empty: send at least one text")
    if len(value) > limits.max_texts:
        raise BadRequest(
            f"{where}: {len(value)} texts is over the limit of {limits.max_texts} a request", 413
        )
    wrong = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
    if wrong is not None:
        kind = type(value[wrong]).__name__
        raise BadRequest(f"{where}: item {wrong} is {kind}, not a string")
    return value


def predictions_sha256(rows: Sequence[tuple[str, int, str]]) -> str:
    """SHA-256 of [file, line, predicted label] rows in test-split order, as JSON: the hash
    scripts/train.py records as retraind.predictions.sha256 (docs/pipeline-contract.md), so a served
    model can be checked against its registered run."""
    text = json.dumps([list(r) for r in rows], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def predictions(labels: Sequence[str], classes: Sequence[str], probabilities: Sequence[Sequence[float]],
                version: str) -> dict[str, Any]:  # fmt: skip
    """The `/predict` answer: a label and the class probabilities for each text, and who answered."""
    return {
        "model_version": version,
        "predictions": [
            {
                "label": label,
                "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
            }
            for label, row in zip(labels, probabilities, strict=True)
        ],
    }
