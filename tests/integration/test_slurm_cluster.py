"""The single-node Slurm cluster of the tests (tests/integration/slurm.py), run by the test's user:
batch jobs run as that user on the partition they asked for, rootless Podman runs inside a job,
and a job's end (exit status, scancel) reads as Slurm reports it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import BASE_IMAGE
from tests.integration.slurm import TIMING, SlurmCluster

KILL_WAIT_S = int(TIMING["KillWait"])


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll check() every 0.1 s until true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(autouse=True, scope="module")
def _leaves_no_job(slurm_cluster: SlurmCluster) -> Iterator[None]:
    """No job of this module is left at its end (the cluster is the session's). A job over its
    time limit is test_slurm_executor's: a limit is whole minutes, checked every 30 s."""
    yield
    wait_until("an empty queue", lambda: not slurm_cluster.queue(), KILL_WAIT_S + 30)


def test_a_batch_job_runs_as_this_user_on_the_partition_it_asked_for(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    job = script(tmp_path / "job.sh", 'echo "user=$(id -un) partition=$SLURM_JOB_PARTITION"\n')
    out = tmp_path / "out"
    done = slurm_cluster.run("sbatch", "--parsable", "--wait", "-p", "train", "-o", str(out), str(job))
    record = slurm_cluster.job(done.stdout.strip())
    assert out.read_text() == f"user={slurm_cluster.user} partition=train\n"
    assert (record["JobState"], record["Partition"], record["ExitCode"]) == ("COMPLETED", "train", "0:0")
    assert record["UserId"].startswith(f"{slurm_cluster.user}(")
    # Without -p, the default partition; srun waits for its step (no scheduler tick: allocations
    # are made when asked).
    srun = slurm_cluster.run("srun", "printenv", "SLURM_JOB_PARTITION")
    assert srun.stdout == f"{slurm_cluster.default_partition}\n"


def test_an_exit_status_is_the_jobs_exit_code_and_sbatch_waits_with_it(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    job = script(tmp_path / "job.sh", "exit 3\n")
    done = slurm_cluster.run("sbatch", "--parsable", "--wait", "-o", "/dev/null", str(job), check=False)
    assert done.returncode == 3
    record = slurm_cluster.job(done.stdout.strip())
    assert (record["JobState"], record["Reason"], record["ExitCode"]) == ("FAILED", "NonZeroExitCode", "3:0")


def test_back_to_back_jobs_start_on_the_next_scheduler_tick(slurm_cluster: SlurmCluster) -> None:
    """batch_sched_delay=0: each job starts within the controller's one-second tick (Slurm's
    default of 3 s made back-to-back jobs take about 3 s each)."""
    took = []
    for _ in range(3):
        started = time.monotonic()
        job_id = slurm_cluster.sbatch("-o", "/dev/null", "--wrap", "true")
        assert slurm_cluster.wait_job(job_id, 30)["JobState"] == "COMPLETED"
        took.append(time.monotonic() - started)
    assert statistics.median(took) < 2.0, took


@pytest.mark.podman
def test_rootless_podman_runs_inside_a_job(
    slurm_cluster: SlurmCluster, podman_ready: None, tmp_path: Path
) -> None:
    job = script(tmp_path / "job.sh", f"podman run --rm --network=none {BASE_IMAGE} true\n")
    out = tmp_path / "out"
    done = slurm_cluster.run(
        "sbatch", "--parsable", "--wait", "-o", str(out), str(job), check=False, timeout=300
    )
    assert done.returncode == 0, out.read_text()
    assert slurm_cluster.job(done.stdout.strip())["JobState"] == "COMPLETED"


def test_scancel_terms_the_batch_script_and_the_job_leaves_the_queue(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The script's TERM trap runs (where a script stops its container), and squeue shows the job
    with its --job-name and --comment until it has gone."""
    marker, ready = tmp_path / "term", tmp_path / "ready"
    job = script(
        tmp_path / "job.sh", f"trap 'echo TERM >{marker}; exit 143' TERM\ntouch {ready}\nsleep 600 &\nwait\n"
    )
    job_id = slurm_cluster.sbatch(
        "-J", "stage-train", "--comment", "run=r1 stage=train", "-o", "/dev/null", str(job)
    )
    wait_until("the job's script", ready.exists, 30)
    mine = slurm_cluster.run("squeue", "--me", "-h", "-o", "%i|%j|%k|%T").stdout.splitlines()
    assert f"{job_id}|stage-train|run=r1 stage=train|RUNNING" in mine
    slurm_cluster.run("scancel", job_id)
    gone = wait_until(
        "the job to leave squeue", lambda: job_id not in slurm_cluster.queue(), KILL_WAIT_S + 10
    )
    record = slurm_cluster.job(job_id)
    assert marker.read_text() == "TERM\n"
    assert (record["JobState"], record["ExitCode"]) == ("CANCELLED", "143:0")
    assert gone < KILL_WAIT_S, "the script exits on TERM: no wait for KillWait's SIGKILL"
