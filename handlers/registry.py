"""The pipeline's stages, in order: the one explicit list the runner executes (in the order of
daemon.core.stages.STAGE_NAMES, which a unit test holds it to)."""

from __future__ import annotations

from daemon.core.stages import Stage
from handlers import build, preprocess, register, train, validate

STAGES: dict[str, Stage] = {
    build.NAME: build.STAGE,
    validate.NAME: validate.STAGE,
    preprocess.NAME: preprocess.STAGE,
    train.NAME: train.STAGE,
    register.NAME: register.STAGE,
}
