"""The Slurm executor's pure parts: options from the settings, sbatch's command line, the batch
script, what Slurm's job states mean."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import daemon.adapters.slurm as slurm_adapter
from daemon.adapters.podman import PodmanCli
from daemon.adapters.slurm import SlurmExecutor
from daemon.core.config import load_settings
from daemon.core.errors import (
    ConfigError,
    InfrastructureError,
    LostWorkError,
    StageFailedError,
    StageTimeoutError,
)
from daemon.core.jobs import CmdResult, ContainerJob
from daemon.core.slurm import (
    JobOptions,
    batch_script,
    ended_by_slurm,
    parse_job,
    poll_delays,
    sbatch_argv,
    slurm_options,
    time_limit_s,
)

HOME, CWD = Path("/home/ada"), Path("/srv/lab")


def test_per_stage_tables_override_the_defaults_option_by_option() -> None:
    options = slurm_options(
        {
            "partition": "cpu",
            "account": "nlp",
            "time": "30",
            "image_dir": "~/images",
            "train": {"partition": "gpu", "gres": "gpu:1", "time": "4:00:00", "cpus": 8},
        },
        CWD,
        HOME,
    )
    assert options.for_stage("validate") == JobOptions(partition="cpu", account="nlp", time="30")
    assert options.for_stage("train") == JobOptions(
        partition="gpu", account="nlp", time="4:00:00", cpus=8, gres="gpu:1"
    )
    assert options.image_dir == HOME / "images"
    assert options.stages == ("validate", "preprocess", "train")


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"partiton": "cpu"}, "unknown option 'partiton'"),
        ({"time": "an hour"}, "slurm.time: 'an hour' is not a Slurm time limit"),
        ({"register": {"partition": "gpu"}}, "[slurm.register]: not a stage with containers"),
        ({"train": {"cpus": -1}}, "slurm.train.cpus must be a whole number"),
        ({"extra": "--exclusive"}, "slurm.extra must be a list of strings"),
        ({"extra": ["exclusive"]}, "'exclusive' is not an sbatch option"),
        ({"stages": ["train", "serve"]}, "slurm.stages must list stages of"),
        ({"poll_s": 0}, "slurm.poll_s must be a positive number of seconds"),
        ("gpu", "slurm must be a table"),
    ],
)
def test_a_bad_slurm_table_names_the_key(table: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        slurm_options(table, CWD, HOME)
    assert says in str(caught.value)


def test_the_settings_file_carries_the_slurm_table(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('executor = "slurm"\n[slurm]\npartition = "cpu"\n[slurm.train]\npartition = "gpu"\n')
    s = load_settings(environ={"HOME": str(tmp_path)}, config_file=config, cwd=tmp_path)
    assert s.executor == "slurm"
    assert s.slurm.for_stage("train").partition == "gpu"
    assert s.slurm.for_stage("preprocess").partition == "cpu"
    with pytest.raises(ConfigError, match="executor must be one of local, slurm"):
        load_settings(environ={"HOME": str(tmp_path), "RETRAIND_EXECUTOR": "k8s"}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("5:30", 330), ("1:30:00", 5400), ("2-0", 172800), ("1-2:3", 93780), ("1-0:0:7", 86407)],
)
def test_slurm_time_formats(text: str, seconds: float) -> None:
    assert time_limit_s(text) == seconds


def test_sbatch_asks_for_what_the_stage_options_say(tmp_path: Path) -> None:
    options = JobOptions(
        partition="gpu", account="nlp", cpus=4, mem="8G", gres="gpu:1", extra=("--exclusive",)
    )
    script = tmp_path / "train" / "job.sbatch"
    argv = sbatch_argv(
        "retraind-r1-train", "io.retraind.run=r1", options, "60", tmp_path / "o", tmp_path / "e", script
    )
    assert argv[:2] == ("sbatch", "--parsable")
    for flag in (
        "--job-name=retraind-r1-train",
        "--comment=io.retraind.run=r1",
        "--no-requeue",
        "--time=60",
        "--partition=gpu",
        "--account=nlp",
        "--cpus-per-task=4",
        "--mem=8G",
        "--gres=gpu:1",
        "--exclusive",
        f"--output={tmp_path / 'o'}",
        f"--chdir={script.parent}",
    ):
        assert flag in argv
    assert argv[-1] == str(script)
    assert not any(a.startswith("--qos") for a in argv)  # "" leaves it to the cluster


def test_the_batch_script_is_valid_bash_and_quotes_the_command(tmp_path: Path) -> None:
    text = batch_script("c1", "sha256:ab", ("podman", "run", "--env=X=a b", "img", "echo", "it's"), None, 10)
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert "'--env=X=a b'" in text and "'it'\"'\"'s'" in text
    assert "trap stop TERM INT" in text and 'podman stop --ignore --time=10 "$name"' in text


TIMEOUT_LINE = (
    "JobId=7 JobName=retraind-r1-train UserId=ci(1001) GroupId=ci(1001) Priority=1 Account=(null) "
    "JobState=TIMEOUT Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 ExitCode=0:15 "
    "RunTime=00:01:04 TimeLimit=00:01:00 Partition=train NodeList=vm Comment=io.retraind.run=r1"
)


def test_a_timed_out_job_is_slurms_doing_with_its_reason() -> None:
    job = parse_job(TIMEOUT_LINE)
    assert job is not None and job.done and not job.pending
    assert (job.job_id, job.state, job.reason, job.partition, job.node) == (
        "7",
        "TIMEOUT",
        "TimeLimit",
        "train",
        "vm",
    )
    assert (job.exit_code, job.signal) == (0, 15)
    why = ended_by_slurm(job)
    assert (
        why == "slurm job 7 reached its time limit (TIMEOUT, reason TimeLimit, time limit 00:01:00, node vm)"
    )


def test_a_job_that_exited_keeps_its_exit_code_and_a_cancel_says_by_whom() -> None:
    failed = parse_job(
        TIMEOUT_LINE.replace(
            "JobState=TIMEOUT Reason=TimeLimit", "JobState=FAILED Reason=NonZeroExitCode"
        ).replace("ExitCode=0:15", "ExitCode=3:0")
    )
    assert failed is not None and failed.exit_code == 3 and ended_by_slurm(failed) is None
    cancelled = parse_job(
        TIMEOUT_LINE.replace("JobState=TIMEOUT Reason=TimeLimit", "JobState=CANCELLED by 0 Reason=None")
    )
    assert cancelled is not None and cancelled.state == "CANCELLED" and cancelled.detail == "by 0"
    assert ended_by_slurm(cancelled) == "slurm job 7 was cancelled (CANCELLED by 0, node vm)"
    pending = parse_job(
        TIMEOUT_LINE.replace("JobState=TIMEOUT", "JobState=PENDING").replace("NodeList=vm", "NodeList=(null)")
    )
    assert pending is not None and pending.pending and not pending.done and pending.node == ""
    assert parse_job("slurm_load_jobs error: Invalid job id specified") is None


def test_the_first_looks_at_a_job_come_quickly() -> None:
    delays = poll_delays(1.0)
    assert delays[0] == 0.1 and all(d < 1.0 for d in delays) and sum(delays) < 2


class FakeSlurm:
    """sbatch, scontrol, squeue and scancel as a cluster would answer them (for the executor's own
    logic; the real cluster is tests/integration/test_slurm_executor.py): the job goes through
    `states`, one per look; what the job wrote is in its output files."""

    def __init__(self, states: list[str], queued: str = "") -> None:
        self.states, self.queued, self.calls = states, queued, []  # type: ignore[var-annotated]

    def __call__(self, argv: tuple[str, ...], **kw: object) -> CmdResult:
        self.calls.append(argv)
        if argv[0] == "sbatch":
            out = next(a.split("=", 1)[1] for a in argv if a.startswith("--output="))
            Path(out).write_text("trained\n")
            return CmdResult(argv, 0, "41\n", "")
        if argv[0] == "scontrol":
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            line = TIMEOUT_LINE.replace("JobId=7", "JobId=41")
            line = line.replace("JobState=TIMEOUT Reason=TimeLimit", state)
            if "ExitCode=" in state:  # the state names the exit code: the line has that one only
                line = line.replace(" ExitCode=0:15", "")
            return CmdResult(argv, 0, line, "")
        if argv[0] == "squeue":
            return CmdResult(argv, 0, self.queued, "")
        return CmdResult(argv, 0, "", "")


def executor(monkeypatch: pytest.MonkeyPatch, fake: FakeSlurm) -> SlurmExecutor:
    monkeypatch.setattr(slurm_adapter, "run_cmd", fake)
    local = PodmanCli(rootless=True)
    options = slurm_options({"partition": "cpu"}, CWD, HOME)
    return SlurmExecutor(options, local, sleep=lambda s: None)


def job(tmp_path: Path) -> ContainerJob:
    labels = {"io.retraind.run": "r1", "io.retraind.stage": "train"}
    return ContainerJob(
        "retraind-r1-train", "sha256:ab", ("python", "train.py"), labels=labels, timeout_s=600
    )


@pytest.mark.parametrize(
    ("state", "error", "says"),
    [
        ("JobState=TIMEOUT Reason=TimeLimit", StageTimeoutError, "reached its time limit (TIMEOUT"),
        ("JobState=NODE_FAIL Reason=NodeDown", LostWorkError, "lost its node (NODE_FAIL, reason NodeDown"),
        ("JobState=PREEMPTED Reason=None", LostWorkError, "was preempted (PREEMPTED"),
        ("JobState=OUT_OF_MEMORY Reason=OutOfMemory", StageFailedError, "raise slurm.train.mem"),
        ("JobState=CANCELLED by 0 Reason=None", InfrastructureError, "was cancelled (CANCELLED by 0"),
    ],
)
def test_a_job_slurm_ended_fails_the_stage_with_slurms_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state: str, error: type[Exception], says: str
) -> None:
    fake = FakeSlurm(["JobState=PENDING Reason=Resources", "JobState=RUNNING Reason=None", state])
    with pytest.raises(error) as caught:
        executor(monkeypatch, fake).run(job(tmp_path), tmp_path / "train" / "train.log")
    assert says in str(caught.value) and "slurm job 41" in str(caught.value)
    assert type(caught.value) is error  # a lost node is not a plain infrastructure failure, nor the reverse


def test_a_job_that_exits_gives_its_exit_code_output_and_placement(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeSlurm(["JobState=RUNNING Reason=None", "JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0"])
    runner = executor(monkeypatch, fake)
    log = tmp_path / "train" / "train.log"
    result = runner.run(job(tmp_path), log)
    assert result.returncode == 3 and result.stdout == "trained\n"
    assert result.argv[:2] == ("podman", "run")  # what ran in the job
    assert runner.placements("r1") == {"retraind-r1-train": "41"}
    assert "trained\n" in log.read_text() and "[slurm job 41: FAILED exit 3 on vm]" in log.read_text()
    script = (tmp_path / "train" / "retraind-r1-train.sbatch").read_text()
    assert "podman run --rm" in script and "--label=io.retraind.run=r1" in script


def test_stopping_a_run_cancels_the_jobs_with_its_comment_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeSlurm(
        ["JobState=RUNNING Reason=None"], queued="41|io.retraind.run=r1\n42|io.retraind.run=r2\n43|\n"
    )
    runner = executor(monkeypatch, fake)
    monkeypatch.setattr(runner.local, "stop_labelled", lambda label, timeout: [])
    fake.queued = "41|io.retraind.run=r1\n42|io.retraind.run=r2\n43|\n"

    def gone_after_cancel(argv: tuple[str, ...], **kw: object) -> CmdResult:
        if argv[0] == "scancel":  # Slurm ends the cancelled jobs: squeue lists them no more
            kept = [line for line in fake.queued.splitlines() if line.split("|")[0] not in argv[1:]]
            fake.queued = "\n".join(kept) + "\n"
        return fake(argv, **kw)

    monkeypatch.setattr(slurm_adapter, "run_cmd", gone_after_cancel)
    assert runner.stop_labelled("io.retraind.run=r1", 5) == ["slurm:41"]
    assert [c for c in fake.calls if c[0] == "scancel"] == [("scancel", "41")]
    assert runner.stop_labelled("io.retraind", 5) == ["slurm:42"]  # every run's, never a stranger's (43)


def test_status_shows_the_current_runs_slurm_jobs_from_the_journal(tmp_path: Path) -> None:
    from daemon.commands.status import collect_status, render_status
    from daemon.state.journal import Journal

    settings = load_settings({"state_dir": tmp_path}, environ={"HOME": str(tmp_path)})
    journal = Journal.open(tmp_path / "journal.db")
    try:
        journal.start_run("r1", "data", [("data", "a.csv")], "c1", "d1")
        journal.stage_started("r1", "validate")
        journal.job_submitted("12", "retraind-r1-validate-data", "r1", "validate")
        journal.job_ended("12", "retraind-r1-validate-data", "COMPLETED", "None", "n3", 0)
        journal.stage_started("r1", "train")
        journal.job_submitted("13", "retraind-r1-train", "r1", "train")
    finally:
        journal.close()
    status = collect_status(settings, 5)
    assert status["current"]["slurm_jobs"] == [
        {"job_id": "12", "stage": "validate", "state": "COMPLETED", "node": "n3"},
        {"job_id": "13", "stage": "train", "state": "submitted", "node": None},
    ]
    assert "slurm jobs: 12 (validate, COMPLETED), 13 (train, submitted)" in render_status(status)
