"""Names defined once in the core and derived everywhere else (issue 12)."""

from __future__ import annotations

from daemon.core.jobs import RUN_LABEL, run_label
from daemon.core.stages import STAGE_NAMES
from daemon.engine.metrics import STAGES as METRIC_STAGES
from daemon.engine.reproduction import REBUILT
from handlers.registry import STAGES


def test_the_runner_s_list_of_stages_is_the_core_s_names_in_order() -> None:
    assert tuple(STAGES) == STAGE_NAMES
    assert all(stage.name == name for name, stage in STAGES.items())
    assert METRIC_STAGES == STAGE_NAMES
    assert set(REBUILT) < set(STAGE_NAMES)


def test_a_run_s_containers_are_found_by_one_label() -> None:
    assert run_label("r1") == f"{RUN_LABEL}=r1" == "io.retraind.run=r1"


def test_the_tags_reproduce_reads_are_the_names_register_writes(ctx) -> None:  # type: ignore[no-untyped-def]
    from daemon.core.records import COMMIT_TAG, DIRTY_TAG, RUN_ID_TAG
    from handlers.register import provenance_tags

    tags = provenance_tags(ctx)
    assert tags[COMMIT_TAG] == ctx.git.commit and tags[DIRTY_TAG] == "false" and tags[RUN_ID_TAG] == "r1"
    assert (COMMIT_TAG, DIRTY_TAG) == ("retraind.git.commit", "retraind.git.dirty")  # MLflow holds these
