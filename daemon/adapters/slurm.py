"""Slurm behind the `ContainerRunner` seam: each container job of the stages in `slurm.stages` is one
Slurm job (`sbatch`) whose script runs the same `podman run` on a node; builds, image lookups and
the other stages' containers stay with the local podman. Cancelling is `scancel`; recovery finds a
run's jobs by their comment (the run label)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.adapters.podman import PodmanCli, run_argv, save_argv
from daemon.adapters.proc import run_cmd
from daemon.core.errors import InfrastructureError, LostWorkError, StageFailedError, StageTimeoutError
from daemon.core.jobs import LABEL, RUN_LABEL, STAGE_LABEL, BuildJob, CmdResult, ContainerJob
from daemon.core.slurm import (
    CANCELLED,
    LOST_STATES,
    JobState,
    SlurmOptions,
    batch_script,
    ended_by_slurm,
    minutes,
    parse_job,
    poll_delays,
    sbatch_argv,
    time_limit_s,
)

log = structlog.get_logger()

COMMANDS = ("sbatch", "squeue", "scancel", "scontrol")  # Slurm's client commands the executor runs
KEEP_ARCHIVES = 3  # image archives kept in slurm.image_dir besides the one a job needs now
CONTROLLER_PATIENCE_S = 300.0  # how long slurmctld may not answer before the stage fails
KILL_GRACE_S = 120.0  # past its time limit, how long Slurm has to end a job before we cancel it


@dataclass(frozen=True)
class JobEvent:
    """What the executor tells its listener: a job was submitted, or ended (state then set)."""

    kind: str  # "submitted" | "ended"
    job_id: str
    name: str
    run_id: str
    stage: str
    state: JobState | None = None


class _Output:
    """Copies what a job writes to its output files into the stage's log as it arrives."""

    def __init__(self, path: Path, log_path: Path) -> None:
        self.path, self.log_path, self.offset, self.parts = path, log_path, 0, [""]

    def pump(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        if chunk:
            self.offset += len(chunk)
            text = chunk.decode("utf-8", "replace")
            self.parts.append(text)
            with contextlib.suppress(OSError), self.log_path.open("a", encoding="utf-8") as out:
                out.write(text)

    def text(self) -> str:
        return "".join(self.parts)


class SlurmExecutor:
    """The `ContainerRunner` of `executor = "slurm"`."""

    def __init__(
        self,
        options: SlurmOptions,
        local: PodmanCli,
        on_job: Callable[[JobEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options, self.local = options, local
        self.on_job = on_job or (lambda e: None)
        self.sleep, self.clock = sleep, clock
        self._lock = threading.Lock()
        self._ours: set[str] = set()  # jobs we cancelled: their CANCELLED is a stop, not a failure
        self._placed: dict[str, dict[str, str]] = {}  # run ID -> container name -> job ID

    # -- the ContainerRunner protocol ---------------------------------------------------------
    def build(self, job: BuildJob, log_path: Path) -> CmdResult:
        return self.local.build(job, log_path)

    def image_id(self, ref: str) -> str | None:
        return self.local.image_id(ref)

    def run(self, job: ContainerJob, log_path: Path) -> CmdResult:
        stage = job.labels.get(STAGE_LABEL, "")
        if stage not in self.options.stages:
            return self.local.run(job, log_path)
        return self._run_job(job, stage, log_path)

    def stop_labelled(self, label: str = LABEL, stop_timeout_s: float = 5) -> list[str]:
        """Cancel every job of ours whose comment is the label (every retraind job for LABEL) and
        wait until Slurm has ended them; then the local containers with the label."""
        ids = [job_id for job_id, comment in self._queued() if _matches(comment, label)]
        if ids:
            self._cancel_ours(ids)
            deadline = self.clock() + stop_timeout_s + 60
            while self.clock() < deadline:
                left = {job_id for job_id, _ in self._queued()} & set(ids)
                if not left:
                    break
                self.sleep(0.2)
            else:
                log.warning("slurm_jobs_still_queued", job_ids=sorted(left), label=label)
        return [f"slurm:{i}" for i in ids] + self.local.stop_labelled(label, stop_timeout_s)

    def placements(self, run_id: str) -> dict[str, str]:
        """Container name -> Slurm job ID, for this process's jobs of a run."""
        with self._lock:
            return dict(self._placed.get(run_id, {}))

    # -- one job ------------------------------------------------------------------------------
    def _run_job(self, job: ContainerJob, stage: str, log_path: Path) -> CmdResult:
        workdir = log_path.parent
        workdir.mkdir(parents=True, exist_ok=True)
        self.local.own_outputs(job)
        archive = self._archive(job.image) if self.options.image_dir is not None else None
        options = self.options.for_stage(stage)
        limit = options.time or minutes(job.timeout_s)
        podman = run_argv(job, rootless=self.local.rootless)
        script = workdir / f"{job.name}.sbatch"
        script.write_text(batch_script(job.name, job.image, podman, archive, self.local.stop_timeout_s))
        out, err = workdir / f"{job.name}.slurm.out", workdir / f"{job.name}.slurm.err"
        argv = sbatch_argv(job.name, _comment(job), options, limit, out, err, script)
        submitted = run_cmd(argv, timeout=120, log_path=log_path)
        job_id = submitted.stdout.strip().split(";")[0]
        if submitted.returncode != 0 or not job_id.isdigit():
            raise InfrastructureError(f"sbatch refused {job.name}: {submitted.tail(5)}")
        run_id = job.labels.get(RUN_LABEL, "")
        with self._lock:
            self._placed.setdefault(run_id, {})[job.name] = job_id
        self.on_job(JobEvent("submitted", job_id, job.name, run_id, stage))
        outputs = (_Output(out, log_path), _Output(err, log_path))
        state = self._wait(job_id, stage, time_limit_s(limit), outputs)
        self.on_job(JobEvent("ended", job_id, job.name, run_id, stage, state))
        for o in outputs:
            o.pump()
        with contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as f:
            f.write(f"[slurm job {job_id}: {state.state} exit {state.exit_code} on {state.node or '-'}]\n")
        return self._result(stage, state, podman, outputs)

    def _result(
        self, stage: str, state: JobState, podman: tuple[str, ...], outputs: tuple[_Output, ...]
    ) -> CmdResult:
        why = ended_by_slurm(state)
        stdout, stderr = outputs[0].text(), outputs[1].text()
        if why is None:
            return CmdResult(podman, state.exit_code, stdout, stderr)
        with self._lock:
            ours = state.job_id in self._ours
        if state.state == CANCELLED and ours:  # stopped by us: the pipeline says why (cancelled)
            return CmdResult(podman, 143, stdout, stderr + f"\n{why}")
        if state.state == "TIMEOUT":
            raise StageTimeoutError(stage, _seconds(state.time_limit), why)
        if state.state == "OUT_OF_MEMORY":
            raise StageFailedError(stage, state.exit_code or 137, f"{why}: raise slurm.{stage}.mem")
        if state.state in LOST_STATES:
            raise LostWorkError(f"stage {stage}: {why}")
        raise InfrastructureError(f"stage {stage}: {why}")

    def _wait(self, job_id: str, stage: str, limit_s: float, outputs: tuple[_Output, ...]) -> JobState:
        """Look at the job until Slurm says it ended, copying its output meanwhile."""
        delays = iter(poll_delays(self.options.poll_s))
        started = self.clock()
        running_since: float | None = None
        unanswered_since: float | None = None
        while True:
            self.sleep(next(delays, self.options.poll_s))
            for o in outputs:
                o.pump()
            state = self._look(job_id)
            now = self.clock()
            if state is None:
                unanswered_since = unanswered_since or now
                if now - unanswered_since > CONTROLLER_PATIENCE_S:
                    self._cancel_ours([job_id])
                    raise InfrastructureError(
                        f"stage {stage}: slurmctld has not answered about job {job_id} for "
                        f"{CONTROLLER_PATIENCE_S:.0f} s; cancelled it"
                    )
                continue
            unanswered_since = None
            if state.done:
                return state
            if state.pending:
                if now - started > self.options.pending_timeout_s:
                    self._cancel_ours([job_id])
                    raise InfrastructureError(
                        f"stage {stage}: slurm job {job_id} still pending after "
                        f"{self.options.pending_timeout_s:.0f} s (reason {state.reason}); cancelled it"
                    )
                continue
            running_since = running_since or now
            if now - running_since > limit_s + KILL_GRACE_S:
                self._cancel_ours([job_id])
                why = f"slurm job {job_id} outlived its time limit; cancelled it"
                raise StageTimeoutError(stage, limit_s, why)

    def _look(self, job_id: str) -> JobState | None:
        """The job's state; None when slurmctld does not answer (or no longer knows the job)."""
        found = run_cmd(("scontrol", "show", "job", "--oneliner", job_id), timeout=60)
        if found.returncode != 0:
            log.warning("slurm_look_failed", job_id=job_id, error=found.tail(2))
            return None
        return parse_job(found.stdout)

    # -- Slurm's commands ---------------------------------------------------------------------
    def _queued(self) -> list[tuple[str, str]]:
        """(job ID, comment) of this user's jobs Slurm has not ended."""
        found = run_cmd(("squeue", "--me", "--noheader", "--format=%i|%k"), timeout=60)
        if found.returncode != 0:
            raise InfrastructureError(f"squeue failed: {found.tail(3)}")
        rows = (line.split("|", 1) for line in found.stdout.splitlines() if "|" in line)
        return [(i.strip(), c.strip()) for i, c in rows]

    def _cancel_ours(self, ids: list[str]) -> None:
        """scancel; their CANCELLED is then a stop of ours, not a failure."""
        with self._lock:
            self._ours.update(ids)
        done = run_cmd(("scancel", *ids), timeout=60)
        if done.returncode != 0:
            log.warning("scancel_failed", job_ids=ids, error=done.tail(3))

    # -- the image on the nodes ---------------------------------------------------------------
    def _archive(self, image: str) -> Path:
        """`<image_dir>/<image ID>.tar`, saved once (a node without the image loads it; `podman
        load` keeps the ID); older archives beyond KEEP_ARCHIVES are removed."""
        assert self.options.image_dir is not None
        directory = self.options.image_dir
        image_id = self.local.image_id(image) or image
        archive = directory / f"{image_id}.tar"
        if archive.is_file():
            return archive
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{image_id}.{os.getpid()}-{threading.get_ident()}.tmp"
        started = self.clock()
        try:
            saved = run_cmd(save_argv(image_id, tmp), timeout=1800)
            if saved.returncode != 0:
                why = f"podman save {image_id[:12]} for the nodes failed: {saved.tail(3)}"
                raise InfrastructureError(why)
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)
        log.info(
            "slurm_image_shared",
            image_id=image_id[:12],
            archive=str(archive),
            bytes=archive.stat().st_size,
            seconds=round(self.clock() - started, 2),
        )
        old = sorted((p for p in directory.glob("*.tar") if p != archive), key=_mtime)
        for stale in old[: max(0, len(old) - KEEP_ARCHIVES)]:
            stale.unlink(missing_ok=True)
        return archive


def _comment(job: ContainerJob) -> str:
    """The job's comment: the run label, what recovery and cancelling look for."""
    run_id = job.labels.get(RUN_LABEL, "")
    return f"{RUN_LABEL}={run_id}" if run_id else LABEL


def _matches(comment: str, label: str) -> bool:
    if label == LABEL:
        return comment == LABEL or comment.startswith(f"{RUN_LABEL}=")
    return comment == label


def _seconds(limit: str) -> float:
    """A job's TimeLimit in seconds (0 when Slurm shows none, e.g. UNLIMITED)."""
    try:
        return time_limit_s(limit)
    except ValueError:
        return 0.0


def _mtime(path: Path) -> float:
    """When an archive was written; one another daemon removed meanwhile sorts first (and is gone)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
