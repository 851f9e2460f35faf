"""`executor = "slurm"` on a real single-node Slurm cluster (munge, slurmctld, slurmd from Debian,
started in a temporary directory by the `slurm_cluster` fixture): the stages' containers run as
Slurm jobs and train what the local executor trains; SIGTERM, kill -9 and Slurm's time limit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from daemon.core.records import MODEL_SHA256_TAG, PREDICTIONS_TAG, SLURM_JOBS_TAG
from daemon.state.journal import Journal
from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import (
    RUN_DEADLINE_S,
    Daemon,
    commit_hanging_training,
    run_cli,
)
from tests.integration.slurm import SlurmCluster
from tests.integration.test_daemon import drop

pytestmark = [pytest.mark.podman, pytest.mark.slow]

# The stages whose containers ran as jobs: the gate preprocesses in validate's container, so
# preprocess (in the default slurm.stages too) has none of its own.
JOBS = ("validate", "train")


def sample_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A committed copy of this project and a data directory holding the sample."""
    repo, data = committed_copy(tmp_path / "repo"), tmp_path / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    return repo, data


def slurm_config(path: Path, train: str = "") -> Path:
    """Every stage container on partition cpu, the training on partition train (both are the one
    node), looked at every 0.5 s at most."""
    path.write_text(
        'executor = "slurm"\n[slurm]\npartition = "cpu"\npoll_s = 0.5\n'
        f'[slurm.train]\npartition = "train"\n{train}',
        encoding="utf-8",
    )
    return path


def run(repo: Path, data: Path, state: Path, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    return run_cli(
        "run", "--json", "--repo", str(repo), "--data-dir", str(data), "--state-dir", str(state), env=env
    )


def tags_of(state: Path, run_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{state / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [found] = client.search_runs(experiments, filter_string=f"tags.`retraind.run_id` = '{run_id}'")
    return {**found.data.tags, **{f"metric.{k}": str(v) for k, v in found.data.metrics.items()}}


def squeue(cluster: SlurmCluster) -> str:
    return cluster.run("squeue", "--noheader", "--format=%i|%j|%T|%k").stdout.strip()


def job_field(cluster: SlurmCluster, job_id: str, name: str) -> str:
    return cluster.job(job_id)[name]


def wait_for(what: str, check: Any, timeout: float = RUN_DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_the_pipeline_on_slurm_trains_the_model_the_local_executor_trains(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    repo, data = sample_inputs(tmp_path)
    code, local_lines, output = run(repo, data, tmp_path / "local", {})
    assert code == 0, output[-4000:]
    config = slurm_config(tmp_path / "slurm.toml")
    env = {**slurm_cluster.env, "RETRAIND_CONFIG": str(config)}
    code, lines, output = run(repo, data, tmp_path / "slurm", env)
    assert code == 0, output[-4000:]

    submitted = [e for e in lines if e.get("event") == "slurm_job_submitted"]
    ended = {e["stage"]: e for e in lines if e.get("event") == "slurm_job_ended"}
    assert [e["stage"] for e in submitted] == list(JOBS)  # one job per stage container
    assert {s: (e["state"], e["exit_code"]) for s, e in ended.items()} == {s: ("COMPLETED", 0) for s in JOBS}
    jobs = {e["stage"]: e["job_id"] for e in submitted}
    assert job_field(slurm_cluster, jobs["train"], "Partition") == "train"  # the per-stage option
    assert job_field(slurm_cluster, jobs["validate"], "Partition") == "cpu"

    [local_done] = [e for e in local_lines if e.get("event") == "run_finished"]
    [slurm_done] = [e for e in lines if e.get("event") == "run_finished"]
    local_tags = tags_of(tmp_path / "local", local_done["run_id"])
    slurm_tags = tags_of(tmp_path / "slurm", slurm_done["run_id"])
    for key in (MODEL_SHA256_TAG, PREDICTIONS_TAG, "metric.f1_score_weighted", "metric.accuracy"):
        assert slurm_tags[key] == local_tags[key], key
    assert (local_tags["retraind.executor"], slurm_tags["retraind.executor"]) == ("local", "slurm")
    assert SLURM_JOBS_TAG not in local_tags

    run_dir = tmp_path / "slurm" / "runs" / slurm_done["run_id"]
    train_log = (run_dir / "train" / "train.log").read_text(encoding="utf-8")
    assert f"[slurm job {jobs['train']}: COMPLETED exit 0 on " in train_log
    assert list((run_dir / "train").glob("*.slurm.out")) and list((run_dir / "train").glob("*.sbatch"))
    journal = Journal.open(tmp_path / "slurm" / "journal.db")
    try:
        rows = journal.jobs(slurm_done["run_id"])
    finally:
        journal.close()
    assert [(r.stage, r.job_id, r.state) for r in rows] == [(s, jobs[s], "COMPLETED") for s in JOBS]
    prefix = f"retraind-{slurm_done['run_id']}-"  # the containers' names, without the run's prefix
    assert slurm_tags[SLURM_JOBS_TAG] == ",".join(
        sorted(f"{r.name.removeprefix(prefix)}={r.job_id}" for r in rows)
    )
    assert slurm_tags[SLURM_JOBS_TAG].startswith("train=")  # e.g. "train=3,validate-data=2"
    assert squeue(slurm_cluster) == ""


def slurm_daemon(tmp_path: Path, cluster: SlurmCluster, train: str = "") -> Daemon:
    (tmp_path / "data").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    slurm_config(home / "retraind.toml", train)  # the harness's config file: it only touches it
    repo = committed_copy(tmp_path / "repo")
    return Daemon(repo, tmp_path / "data", tmp_path / "state", home, **cluster.env)


def wait_train_job(daemon: Daemon, cluster: SlurmCluster, since: int = 0) -> dict[str, Any]:
    """The training's Slurm job (the first submitted from log line `since` on), once squeue shows
    it running."""
    submitted = daemon.wait_log(
        lambda e: e.get("event") == "slurm_job_submitted" and e.get("stage") == "train", RUN_DEADLINE_S, since
    )
    running = f"{submitted['job_id']}|"
    wait_for(
        f"job {submitted['job_id']} running",
        lambda: any(
            line.startswith(running) and line.split("|")[2] == "RUNNING"
            for line in squeue(cluster).splitlines()
        ),
    )
    return submitted


@contextmanager
def hanging_training(tmp_path: Path, cluster: SlurmCluster) -> Iterator[tuple[Daemon, dict[str, Any]]]:
    """A daemon on the Slurm executor whose run's training hangs: (the daemon, its training job
    once squeue shows it running). The daemon is stopped (SIGTERM) at the end."""
    daemon = slurm_daemon(tmp_path, cluster)
    try:
        commit_hanging_training(daemon.repo)
        drop(daemon.data, "drop.csv")
        daemon.start()
        yield daemon, wait_train_job(daemon, cluster)
    finally:
        daemon.stop(timeout=60)


def test_sigterm_during_a_slurm_stage_cancels_its_job_and_records_the_run_cancelled(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    with hanging_training(tmp_path, slurm_cluster) as (daemon, job):
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.wait(60) == 0
        assert squeue(slurm_cluster) == ""  # gone before the daemon exited
        assert job_field(slurm_cluster, job["job_id"], "JobState") == "CANCELLED"
        (run,) = daemon.runs()
        assert (run.run_id, run.status, run.failed_stage) == (job["run_id"], "cancelled", "train")
        leftover = subprocess.run(
            ["podman", "ps", "-aq", f"--filter=label=io.retraind.run={run.run_id}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert leftover.stdout.strip() == ""  # the job's script stopped its container


def test_a_daemon_killed_during_a_slurm_stage_cancels_the_job_at_restart_and_retries_once(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    with hanging_training(tmp_path, slurm_cluster) as (daemon, job):
        daemon.signal(signal.SIGKILL)
        assert daemon.proc is not None and daemon.proc.wait(30) == -signal.SIGKILL
        assert f"{job['job_id']}|" in squeue(slurm_cluster)  # a dead daemon cannot cancel it

        since = len(daemon.lines)
        daemon.start()  # recovery: the job found by its comment and cancelled, the run retried once
        recovered = daemon.wait_log(lambda e: e.get("event") == "run_recovered", 120, since)
        assert recovered["run_id"] == job["run_id"] and recovered["retry"] is True
        assert recovered["containers_removed"] >= 1  # the job (slurm:ID), and any local container
        assert job_field(slurm_cluster, job["job_id"], "JobState") == "CANCELLED"
        retry_job = wait_train_job(daemon, slurm_cluster, since)  # the retry trains (and hangs) again
        assert retry_job["job_id"] != job["job_id"]
        first, retry = daemon.runs()
        assert (first.status, retry.attempt, retry.retry_of) == ("interrupted", 2, first.run_id)
        queued = squeue(slurm_cluster).splitlines()
        assert [line.split("|")[0] for line in queued] == [retry_job["job_id"]]  # the old job is gone
    assert squeue(slurm_cluster) == ""


def test_a_job_slurm_ends_at_its_time_limit_is_a_failed_stage_with_slurms_reason(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    repo, data = sample_inputs(tmp_path)
    commit_hanging_training(repo)
    config = slurm_config(tmp_path / "slurm.toml", train='time = "1"\n')  # one minute: Slurm's least
    env = {**slurm_cluster.env, "RETRAIND_CONFIG": str(config)}
    code, lines, output = run(repo, data, tmp_path / "state", env)
    assert code == 4, output[-4000:]  # a stage that ran too long is the stage's failure
    [failed] = [e for e in lines if e.get("event") == "stage_failed"]
    assert failed["stage"] == "train"
    [reason] = failed["reasons"]
    assert failed["error_kind"] == "StageTimeoutError"
    assert "reached its time limit (TIMEOUT, reason TimeLimit, time limit 00:01:00" in reason
    [ended] = [e for e in lines if e.get("event") == "slurm_job_ended" and e["stage"] == "train"]
    assert (ended["state"], ended["reason"]) == ("TIMEOUT", "TimeLimit")
    tags = tags_of(tmp_path / "state", failed["run_id"])
    assert tags["retraind.failed_stage"] == "train" and "TIMEOUT" in tags["retraind.failure"]
    assert f"train={ended['job_id']}" in tags[SLURM_JOBS_TAG]
    assert squeue(slurm_cluster) == ""


def fresh_store_env(base: Path) -> tuple[dict[str, str], list[str]]:
    """The environment of a node with an image store of its own (empty, in `base`), and how to list its
    images: root honours a storage.conf's graphroot; rootless podman takes its store from
    XDG_DATA_HOME and XDG_RUNTIME_DIR (docs/engineering-notes.md)."""
    base.chmod(0o700)
    if os.geteuid() == 0:
        conf = base / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{base}/graph"\nrunroot = "{base}/run"\n'
        )
        env = {"CONTAINERS_STORAGE_CONF": str(conf)}
    else:
        (base / "run").mkdir(mode=0o700)
        env = {"XDG_DATA_HOME": str(base / "data"), "XDG_RUNTIME_DIR": str(base / "run")}
    return env, ["podman", "images", "--noheading", "--format={{.ID}}"]


def remove_store(base: Path) -> None:
    if os.geteuid() == 0:  # root's overlay driver keeps its graph mounted
        subprocess.run(
            ["umount", "--lazy", str(base / "graph" / "overlay")], check=False, capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)
    else:
        subprocess.run(["podman", "unshare", "rm", "-rf", str(base)], check=False)


def test_a_node_without_the_image_loads_it_from_the_shared_archive_by_image_id(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    (repo, data), images = sample_inputs(tmp_path), tmp_path / "images"
    node_env, list_images = fresh_store_env(Path(tempfile.mkdtemp(prefix="retraind-node-")))
    try:
        export = ",".join(["--export=ALL", *(f"{k}={v}" for k, v in node_env.items())])
        config = slurm_config(tmp_path / "slurm.toml")
        text = config.read_text().replace(
            "[slurm.train]", f'image_dir = "{images}"\nextra = ["{export}"]\n[slurm.train]'
        )
        config.write_text(text)
        env = {**slurm_cluster.env, "RETRAIND_CONFIG": str(config)}
        code, lines, output = run(repo, data, tmp_path / "state", env)
        assert code == 0, output[-4000:]
        [done] = [e for e in lines if e.get("event") == "run_finished"]
        image_id = done["image_id"]
        [shared] = [e for e in lines if e.get("event") == "slurm_image_shared"]
        assert Path(shared["archive"]) == images / f"{image_id}.tar"  # keyed by the image ID
        run_dir = tmp_path / "state" / "runs" / done["run_id"]
        [validate_err] = (run_dir / "validate").glob("*.slurm.err")
        assert f"loading image {image_id} on " in validate_err.read_text()  # the node lacked it
        [train_err] = (run_dir / "train").glob("*.slurm.err")
        assert "loading image" not in train_err.read_text()  # ... once
        node_images = subprocess.run(
            list_images, capture_output=True, text=True, env={**os.environ, **node_env}, check=True
        )
        assert node_images.stdout.split() == [image_id[:12]]  # the same ID in the node's store
        local = tmp_path / "local"
        code, local_lines, output = run(repo, data, local, {})
        assert code == 0, output[-4000:]
        [local_done] = [e for e in local_lines if e.get("event") == "run_finished"]
        slurm_tags, local_tags = (
            tags_of(tmp_path / "state", done["run_id"]),
            tags_of(local, local_done["run_id"]),
        )
        assert slurm_tags[MODEL_SHA256_TAG] == local_tags[MODEL_SHA256_TAG]
    finally:
        remove_store(Path(node_env.get("XDG_DATA_HOME") or node_env["CONTAINERS_STORAGE_CONF"]).parent)


def test_a_node_that_fails_under_a_stage_fails_it_with_slurms_reason_and_the_run_is_retried_once(
    tmp_path: Path, podman_ready: None, slurm_cluster: SlurmCluster
) -> None:
    with hanging_training(tmp_path, slurm_cluster) as (daemon, job):
        since = len(daemon.lines)
        # The node goes down under the job (as a crashed or unreachable node does); with ReturnToService=2
        # it is back once its slurmd registers again.
        slurm_cluster.run(
            "scontrol", "update", f"nodename={slurm_cluster.node}", "state=down", "reason=retraind-test"
        )
        ended = daemon.wait_log(lambda e: e.get("event") == "slurm_job_ended", 120, since)
        assert (ended["job_id"], ended["state"], ended["reason"]) == (job["job_id"], "NODE_FAIL", "NodeDown")
        failed = daemon.wait_log(lambda e: e.get("event") == "stage_failed", 60, since)
        assert failed["error_kind"] == "LostWorkError" and "lost its node (NODE_FAIL" in failed["reasons"][0]
        retried = daemon.wait_log(lambda e: e.get("event") == "run_lost_retry", 60, since)
        assert retried["run_id"] == job["run_id"]
        retry_job = wait_train_job(daemon, slurm_cluster, since)  # the retry, on the node back in service
        first, retry = daemon.runs()
        assert (first.status, first.exit_code, first.failed_stage) == ("failed", 5, "train")
        assert (retry.attempt, retry.retry_of, retry.run_id) == (2, first.run_id, retry_job["run_id"])
    assert squeue(slurm_cluster) == ""


def test_doctor_checks_the_cluster_the_slurm_executor_uses(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    config = slurm_config(tmp_path / "slurm.toml").read_text().replace('"train"', '"gpu"')
    config = config.replace("[slurm.train]", f'image_dir = "{tmp_path}"\n[slurm.train]')
    (tmp_path / "slurm.toml").write_text(config)
    env = {**slurm_cluster.env, "RETRAIND_CONFIG": str(tmp_path / "slurm.toml")}
    code, [checks], output = run_cli("doctor", "--json", "--state-dir", str(tmp_path / "state"), env=env)
    found = {c["name"]: c for c in checks}
    assert found["slurm controller"]["ok"] and "UP" in found["slurm controller"]["detail"]
    partitions = found["slurm partitions"]
    assert not partitions["ok"] and "not in this cluster: gpu" in partitions["detail"]
    assert "cpu" in partitions["fix"] and "train" in partitions["fix"]  # what the cluster has
    assert found["slurm image_dir"]["ok"]
    assert found["state directory for the nodes"]["warning_only"]  # /tmp is no shared filesystem
    assert code == 78, output
    code, [checks], _ = run_cli(
        "doctor",
        "--json",
        "--state-dir",
        str(tmp_path / "state"),
        env={**env, "SLURM_CONF": str(tmp_path / "none.conf")},
    )
    assert not {c["name"]: c for c in checks}["slurm controller"]["ok"]
