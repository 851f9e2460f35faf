"""Training parameters: params.toml in the repository, explicit overrides, the recorded values."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.errors import ConfigError
from daemon.core.params import TrainParams, load_params, params_from_mlflow
from tests.conftest import ROOT


def test_the_project_params_file_holds_the_defaults() -> None:
    assert load_params(ROOT) == TrainParams(seed=42, test_size=0.2, c=1.0)


def test_the_file_is_read_and_explicit_overrides_win(tmp_path: Path) -> None:
    (tmp_path / "params.toml").write_text("[train]\nC = 0.5\nseed = 7\n")
    assert load_params(tmp_path) == TrainParams(seed=7, c=0.5)
    assert load_params(tmp_path, {"seed": 1, "c": None}) == TrainParams(seed=1, c=0.5)
    assert load_params(tmp_path / "elsewhere") == TrainParams()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nalpha = 1\n", "unknown parameter"),
        ("[train]\nC = -1\n", "must be positive"),
        ("[train]\ntest_size = 1.5\n", "between 0 and 1"),
        ("[train\n", "cannot read"),
    ],
)
def test_bad_params_are_configuration_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "params.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path)


def test_recorded_params_round_trip_and_missing_ones_are_refused() -> None:
    params = TrainParams(seed=3, test_size=0.25, c=2.0)
    assert params_from_mlflow(params.as_mlflow() | {"labels": "a,b"}) == params
    with pytest.raises(ConfigError, match="C"):
        params_from_mlflow({"seed": "3", "test_size": "0.2"})
