"""The runner and the handlers together, against scripted containers and an in-memory tracker."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.core.errors import EXIT_GATE, EXIT_INFRA, EXIT_STAGE, TrackingError
from daemon.core.inputs import Manifest
from daemon.core.jobs import CmdResult
from daemon.core.stages import Ports, RunContext
from daemon.engine.pipeline import run_stages
from handlers.registry import STAGES
from handlers.validate import advance_reference
from tests.fakes import FakeContainers, FakeTracker, RecordingReporter, ok, writes

METRICS = {"f1_score_weighted": 0.73, "accuracy": 0.74}
VERSIONS = {"python": "3.11.2", "node": "18.19.0", "scikit-learn": "1.9.1"}
JEST_OK = {"numPassedTests": 12, "testResults": []}
DATA_OK = {"passed": True, "rows": 100, "problems": []}
IDENTITY = {"model_sha256": "m" * 64, "predictions_sha256": "p" * 64}


def train_script(job):  # type: ignore[no-untyped-def]
    out = next(m.host for m in job.mounts if m.container == "/out")
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir(exist_ok=True)
    (out / "artifacts" / "metrics.json").write_text(json.dumps(METRICS))
    (out / "artifacts" / "params.json").write_text(json.dumps({"n_features": 10}))
    (out / "artifacts" / "identity.json").write_text(json.dumps(IDENTITY))
    (out / "model" / "MLmodel").write_text("flavors: {}\n")
    return CmdResult(tuple(job.argv), 0, "", "")


def preprocess_script(job):  # type: ignore[no-untyped-def]
    writes("processed.jsonl", {"tokens": "a b"})(job)
    return writes("summary.json", {"rows_out": 100})(job)


def containers(**override) -> FakeContainers:  # type: ignore[no-untyped-def]
    scripts = {
        "build-versions": lambda j: ok(j, json.dumps(VERSIONS)),
        "validate-jest": writes("jest.json", JEST_OK),
        "validate-data": writes("data-check.json", DATA_OK),
        "preprocess-parity": writes("parity.json", {"rows": 100, "mismatches": 0, "examples": []}),
        "preprocess": preprocess_script,
        "train": train_script,
    }
    scripts.update(override)
    return FakeContainers(scripts, images={"localhost/retraind-base:bookworm": "sha256:base"})


def test_a_good_run_passes_every_stage_and_registers_with_provenance(ctx: RunContext) -> None:
    fake, tracker, reporter = containers(), FakeTracker(), RecordingReporter()
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, tracker), reporter)
    assert outcome.ok and outcome.exit_code == 0
    assert [e for e in reporter.events if e[0] == "finished"] == [("finished", s) for s in STAGES]
    (record,) = tracker.records
    assert record.status == "FINISHED" and record.metrics == METRICS
    assert record.tags["retraind.git.commit"] == "c" * 40
    assert record.tags["retraind.image.id"] == "sha256:" + "b" * 64
    assert record.tags["retraind.version.node"] == "18.19.0"
    assert record.tags["retraind.data.sha256"] == ctx.manifest.sha256
    assert {
        "retraind.sha256.containerfile",
        "retraind.sha256.lock_python",
        "retraind.sha256.lock_node",
        "retraind.trigger",
    } <= set(record.tags)
    assert outcome.results["register"].outputs["champion"] is True


def test_every_container_is_labelled_and_only_build_probe_lacks_seal(ctx: RunContext) -> None:
    fake = containers()
    run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    names = [j.name for j in fake.ran]
    assert len(set(names)) == len(names)
    assert all(j.labels.get("io.retraind.run") == "r1" for j in fake.ran)
    assert all(not j.network for j in fake.ran)
    train = next(j for j in fake.ran if j.name.endswith("-train"))
    assert [m.writable for m in train.mounts] == [False, True]


def test_failing_jest_test_is_a_gate_rejection_naming_the_test(ctx: RunContext) -> None:
    jest = {
        "numPassedTests": 5,
        "testResults": [
            {
                "name": "/x/__tests__/textclean.test.js",
                "status": "failed",
                "assertionResults": [
                    {
                        "status": "failed",
                        "fullName": "cleanAndTokenize drops stop words",
                        "failureMessages": ["Error: expect(received).toEqual(expected)\n  at ..."],
                    }
                ],
            }
        ],
    }
    fake, tracker, reporter = (
        containers(**{"validate-jest": writes("jest.json", jest, 1)}),
        FakeTracker(),
        RecordingReporter(),
    )
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, tracker), reporter)
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "validate"
    assert "cleanAndTokenize drops stop words" in outcome.error.reasons[0]  # type: ignore[union-attr]
    assert not any(j.name.endswith("-train") for j in fake.ran)
    (record,) = tracker.records
    assert record.status == "FAILED" and record.model_dir is None
    assert record.tags["retraind.failed_stage"] == "validate"


def built_with_tests(tests: dict[str, object]):  # type: ignore[no-untyped-def]
    """The versions container of an image whose build ran the Jest suite (the Containerfile's)."""
    lists = {"debian": [], "python_packages": [], "npm_packages": []}
    environment = {"python": "3.11.2", "node": "18.19.0", **lists}
    printed = {"versions": VERSIONS, "environment": environment, "tests": tests}
    return lambda j: ok(j, json.dumps(printed))


def test_an_image_that_ran_the_suite_at_build_time_is_not_tested_again(ctx: RunContext) -> None:
    tests = {"exitCode": 0, "success": True, "numPassedTests": 196, "testResults": []}
    fake = containers(**{"build-versions": built_with_tests(tests)})
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.ok, outcome.error
    assert not any(j.name.endswith("-jest") for j in fake.ran)
    validate = outcome.results["validate"]
    assert validate.outputs["tests_passed"] == 196 and validate.outputs["tests_ran"] == "at build"
    assert json.loads((ctx.run_dir / "validate" / "jest.json").read_text())["numPassedTests"] == 196


def test_a_suite_that_failed_at_build_time_rejects_the_run_naming_the_test(ctx: RunContext) -> None:
    failing = {
        "name": "__tests__/textclean.test.js",
        "status": "failed",
        "message": "",
        "assertionResults": [
            {"fullName": "drops stop words", "status": "failed", "failureMessages": ["Error: expected 1"]}
        ],
    }
    tests = {"exitCode": 1, "success": False, "numPassedTests": 195, "testResults": [failing]}
    fake = containers(**{"build-versions": built_with_tests(tests)})
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "validate"
    assert outcome.error.reasons == ("jest textclean.test.js: drops stop words: Error: expected 1",)  # type: ignore[union-attr]
    assert outcome.error.kinds == {"jest"}  # type: ignore[union-attr]
    assert not any(j.name.endswith(("-jest", "-data")) for j in fake.ran)


def test_without_a_build_time_outcome_the_data_checks_run_before_the_suite(ctx: RunContext) -> None:
    fake = containers()
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    steps = [j.name.rsplit("-", 1)[-1] for j in fake.ran if "-validate-" in j.name]
    assert steps == ["data", "jest"]
    assert outcome.results["validate"].outputs["tests_ran"] == "in validate"


def test_data_problem_is_a_gate_rejection_with_the_checker_message(ctx: RunContext) -> None:
    report = {
        "passed": False,
        "problems": [
            {"check": "missing_column", "message": "tweets.csv: required column 'sentiment' is missing"}
        ],
    }
    fake = containers(**{"validate-data": writes("data-check.json", report, 1)})
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_GATE
    assert outcome.error.reasons == ("tweets.csv: required column 'sentiment' is missing",)  # type: ignore[union-attr]
    assert not any("preprocess" in j.name for j in fake.ran)


def test_podman_failure_is_infrastructure_and_training_crash_is_a_stage_failure(ctx: RunContext) -> None:
    crash = containers(train=lambda j: CmdResult(tuple(j.argv), 1, "", "Traceback: boom"))
    outcome = run_stages(ctx, list(STAGES.values()), Ports(crash, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_STAGE and "boom" in str(outcome.error)
    podman = containers(preprocess=lambda j: CmdResult(tuple(j.argv), 125, "", "no such image"))
    outcome = run_stages(ctx, list(STAGES.values()), Ports(podman, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_INFRA and outcome.failed_stage == "preprocess"


def test_missing_base_image_says_how_to_build_it(ctx: RunContext) -> None:
    fake = containers()
    fake.images.clear()
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == 78 and "tools/base-image.sh" in str(outcome.error)


def test_the_build_names_its_base_by_the_configured_name_not_its_id(ctx: RunContext) -> None:
    fake = containers()
    run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    # given an ID, buildah writes a random temporary name into the image config: a new image ID
    assert fake.built[0].build_args["BASE_IMAGE"] == "localhost/retraind-base:bookworm"


def test_tracking_outage_fails_register_but_not_silently(ctx: RunContext) -> None:
    tracker = FakeTracker(fail_with=TrackingError("MLflow at http://x failed: refused"))
    outcome = run_stages(ctx, list(STAGES.values()), Ports(containers(), tracker), RecordingReporter())
    assert outcome.failed_stage == "register" and outcome.exit_code == EXIT_INFRA
    assert "train" in outcome.results


def test_tracking_outage_with_an_outbox_completes_the_run_and_queues_it(
    ctx: RunContext, tmp_path: Path
) -> None:
    from daemon.state.journal import Journal
    from daemon.state.outbox import Outbox

    outbox = Outbox(Journal.open(tmp_path / "journal.db"))
    tracker = FakeTracker(fail_with=TrackingError("MLflow at http://x failed: refused"))
    outcome = run_stages(
        ctx, list(STAGES.values()), Ports(containers(), tracker, outbox), RecordingReporter()
    )
    assert outcome.ok and outcome.results["register"].outputs["queued"] is True
    assert outbox.backlog() == 1


def test_a_registration_waiting_in_the_outbox_does_not_answer_for_its_inputs_again(
    ctx: RunContext, tmp_path: Path
) -> None:
    from daemon.state.journal import Journal
    from daemon.state.outbox import Outbox
    from tests.fakes import MemoryStageCache

    outbox, cache = Outbox(Journal.open(tmp_path / "journal.db")), MemoryStageCache()
    down = FakeTracker(fail_with=TrackingError("MLflow at http://x failed: refused"))
    first = run_stages(
        ctx, list(STAGES.values()), Ports(containers(), down, outbox, cache), RecordingReporter()
    )
    assert first.results["register"].final is False
    assert {stage for stage, _ in cache.entries} == {
        "build",
        "build.inspect",
        "validate",
        "preprocess",
        "train",
    }
    up = FakeTracker()
    second = run_stages(
        ctx, list(STAGES.values()), Ports(containers(), up, outbox, cache), RecordingReporter()
    )
    assert (
        second.results["register"].cached_from == "" and len(up.records) == 1
    )  # registered, not "up to date"


def test_a_parity_mismatch_is_a_gate_rejection_with_examples(ctx: RunContext) -> None:
    example = {"file": "a.csv", "line": 7, "text": "#win", "node": "win", "python": "#win"}
    report = {"rows": 100, "mismatches": 3, "examples": [example]}
    fake = containers(**{"preprocess-parity": writes("parity.json", report, 1)})
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "preprocess"
    assert outcome.error.kinds == {"parity"}  # type: ignore[union-attr]
    assert "3 of 100 rows" in outcome.error.reasons[0]  # type: ignore[union-attr]
    assert "a.csv:7" in outcome.error.reasons[1]  # type: ignore[union-attr]
    assert not any(j.name.endswith("-train") for j in fake.ran)


def test_refused_files_stop_the_gate_before_any_container(ctx: RunContext) -> None:
    from dataclasses import replace

    refused = replace(ctx, manifest=Manifest(ctx.manifest.files, (("leak.csv", "a symlink to /etc/x"),)))
    fake = containers()
    outcome = run_stages(refused, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.exit_code == EXIT_GATE and outcome.error.kinds == {"unsafe_file"}  # type: ignore[union-attr]
    assert outcome.error.reasons == ("leak.csv: refused: a symlink to /etc/x",)  # type: ignore[union-attr]
    assert not any("validate" in j.name for j in fake.ran)


def test_drift_is_checked_against_the_last_accepted_drop_which_this_one_then_replaces(
    ctx: RunContext,
) -> None:
    reference = ctx.settings.state_dir / "drift-reference.json"
    reference.parent.mkdir(parents=True, exist_ok=True)
    reference.write_text('{"old": true}')

    def data_check(job):  # type: ignore[no-untyped-def]
        out = next(m.host for m in job.mounts if m.container == "/out")
        (out / "drift-reference.json").write_text('{"new": true}')
        return writes("data-check.json", DATA_OK)(job)

    fake = containers(**{"validate-data": data_check})
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, FakeTracker()), RecordingReporter())
    assert outcome.ok
    job = next(j for j in fake.ran if j.name.endswith("validate-data"))
    assert job.argv[job.argv.index("--reference") :][:2] == ("--reference", "/ref/drift-reference.json")
    assert any(m.host == reference and not m.writable for m in job.mounts)
    assert "--max-label-psi" in job.argv and "--write-reference" in job.argv
    assert reference.read_text() == '{"old": true}'  # validate alone does not advance it
    advance_reference(ctx.settings.state_dir, outcome.results)  # a successful run does (DriftReference)
    assert reference.read_text() == '{"new": true}'
