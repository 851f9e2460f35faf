"""Stage keys and the build stage's inputs: what a Containerfile copies, minus .containerignore."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.cachekeys import copied_sources, ignore_patterns, stage_key
from daemon.core.errors import ConfigError
from handlers.build import build_inputs
from tests.conftest import ROOT


def test_a_key_depends_on_every_input_and_not_on_their_order() -> None:
    key = stage_key("train", {"image_id": "i", "params": {"C": "1.0", "seed": "42"}})
    assert key == stage_key("train", {"params": {"seed": "42", "C": "1.0"}, "image_id": "i"})
    assert key != stage_key("train", {"image_id": "i", "params": {"C": "0.5", "seed": "42"}})
    assert key != stage_key("preprocess", {"image_id": "i", "params": {"C": "1.0", "seed": "42"}})


def test_copied_sources_skip_other_stages_and_keep_every_source() -> None:
    text = (
        "FROM base AS deps\nCOPY a.txt \\\n  b/ /dst/\nFROM deps\n"
        "COPY --from=deps /opt/x /opt/x\nADD --chown=1:1 c.tar /c\nRUN echo COPY nothing\n"
    )
    assert copied_sources(text) == ["a.txt", "b/", "c.tar"]


def test_the_project_containerfile_copies_the_scripts_and_both_locks() -> None:
    inputs = build_inputs(ROOT, ROOT / "Containerfile")
    assert {"requirements.lock", "scripts/package-lock.json", "scripts/train.py"} <= set(inputs)
    assert not [p for p in inputs if "node_modules" in p or "__pycache__" in p]


def test_ignore_lines_are_anchored_at_the_context_root(tmp_path: Path) -> None:
    assert ignore_patterns(["# c", "", "data/*", "!data/sample*", "./out", "**/x"]) == [
        "/data/*",
        "!/data/sample*",
        "/out",
        "/**/x",
    ]
    (tmp_path / "Containerfile").write_text("FROM b\nCOPY data/ /d/\nCOPY sub/ /s/\n")
    (tmp_path / ".containerignore").write_text("data/*\n!data/sample*\nout\n")
    for name in ("data/big.csv", "data/sample.csv", "sub/out", "out"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert set(build_inputs(tmp_path, tmp_path / "Containerfile")) == {"data/sample.csv", "sub/out"}


def test_an_unparsable_containerfile_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text("FROM b\nCOPY <<EOF /x\n")
    with pytest.raises(ConfigError, match="Containerfile"):
        build_inputs(tmp_path, tmp_path / "Containerfile")
