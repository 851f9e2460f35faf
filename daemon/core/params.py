"""Training parameters: versioned with the code in the repository's params.toml, read per run."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError

PARAMS_FILE = "params.toml"
_MLFLOW_NAMES = {"seed": "seed", "test_size": "test_size", "c": "C"}  # field -> MLflow param / TOML key


@dataclass(frozen=True)
class TrainParams:
    """What train.py is given. A commit that changes one is a new model; reproduce reads them back."""

    seed: int = 42
    test_size: float = 0.2
    c: float = 1.0  # inverse regularisation strength of the logistic regression

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"test_size must be between 0 and 1, got {self.test_size}")
        if self.c <= 0:
            raise ConfigError(f"C (inverse regularisation) must be positive, got {self.c}")

    def as_mlflow(self) -> dict[str, str]:
        return {_MLFLOW_NAMES[f.name]: str(getattr(self, f.name)) for f in fields(self)}

    def as_argv(self) -> tuple[str, ...]:
        return ("--seed", str(self.seed), "--test-size", str(self.test_size), "--C", str(self.c))


def _typed(values: Mapping[str, Any], where: str) -> TrainParams:
    known = {toml: name for name, toml in _MLFLOW_NAMES.items()}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        typed: dict[str, Any] = {
            known[k]: (int(v) if known[k] == "seed" else float(v)) for k, v in values.items()
        }
        return TrainParams(**typed)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def load_params(workdir: Path, overrides: Mapping[str, Any] | None = None) -> TrainParams:
    """[train] of <workdir>/params.toml (defaults without one), then explicit overrides (CLI, env)."""
    path = workdir / PARAMS_FILE
    params = TrainParams()
    if path.is_file():
        try:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
        params = _typed(loaded.get("train", {}), f"{path} [train]")
    chosen = {k: v for k, v in (overrides or {}).items() if v is not None}
    return replace(params, **chosen) if chosen else params


def params_from_mlflow(recorded: Mapping[str, str]) -> TrainParams:
    """The parameters a registered run trained with, from its MLflow params."""
    missing = [name for name in _MLFLOW_NAMES.values() if name not in recorded]
    if missing:
        raise ConfigError(f"the run records no {', '.join(missing)} parameter(s): it cannot be reproduced")
    return _typed({name: recorded[name] for name in _MLFLOW_NAMES.values()}, "recorded params")
