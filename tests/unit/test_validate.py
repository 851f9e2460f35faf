"""The gate's own messages: file names escaped, the reasons capped with how many were left out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.core.errors import GateRejectedError
from daemon.core.inputs import Manifest
from daemon.core.stages import Ports, RunContext
from handlers.validate import STAGE, capped, data_problems, printable
from tests.fakes import FakeContainers, FakeTracker


def test_printable_escapes_what_would_split_or_fake_a_line_and_keeps_the_rest() -> None:
    assert printable("a\nb\r\x1b[2K\u2028é😀.csv") == "a\\u000ab\\u000d\\u001b[2K\\u2028é😀.csv"
    assert printable(printable("x\ty")) == "x\\u0009y"  # escaping twice changes nothing more


def test_a_refused_file_name_with_control_characters_is_escaped_in_the_gate_reason(ctx: RunContext) -> None:
    ctx = replace(ctx, manifest=Manifest((), refused=(("evil\nname.csv", "a symlink to /etc/x\n"),)))
    with pytest.raises(GateRejectedError) as caught:
        STAGE.run(ctx, Ports(FakeContainers(), FakeTracker()))
    assert caught.value.reasons == ("evil\\u000aname.csv: refused: a symlink to /etc/x\\u000a",)


def test_many_problems_are_capped_with_a_count_of_the_rest() -> None:
    report = {"problems": [{"message": f"f{i}.csv: bad\n"} for i in range(25)]}
    reasons = capped(data_problems(report))
    assert len(reasons) == 10 and reasons[0] == "f0.csv: bad\\u000a"
    assert reasons[-1] == "and 16 more problems (see data-check.json)"
    assert capped(["one"]) == ["one"]
