"""Acceptance: the full corpus (fetched by tools/fetch-corpus.sh) trains to weighted F1 >= 0.72."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from tests.conftest import IN_CI
from tests.integration.conftest import RunPipeline, make_settings


def corpus_dir() -> Path:
    configured = os.environ.get("RETRAIND_CORPUS_DIR")
    return Path(configured) if configured else load_settings({}).data_dir


@pytest.mark.slow
def test_full_corpus_registers_a_champion_with_f1_at_least_072(
    tmp_path: Path, run_pipeline: RunPipeline
) -> None:
    data = corpus_dir()
    if not (data / "tweets.csv").is_file():
        message = f"no corpus in {data}: run tools/fetch-corpus.sh"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    outcome, _ = run_pipeline(make_settings(tmp_path, data_dir=data))
    assert outcome.ok, outcome.error
    metrics = outcome.results["train"].outputs["metrics"]
    assert metrics["f1_score_weighted"] >= 0.72
    assert outcome.results["train"].outputs["params"]["n_rows"] == 37243  # 38,158 less 915 repeated texts
    assert outcome.results["register"].outputs["champion"] is True
    report = outcome.results["validate"].outputs["data_report"]  # passes with the default thresholds
    assert (report["latin1_rows"], report["duplicate_rows"]) == (4934, 915)
    parity = outcome.results["preprocess"].outputs["parity"]
    assert (parity["rows"], parity["mismatches"]) == (37243, 0)  # the served cleaning equals the trained
