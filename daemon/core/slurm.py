"""The Slurm executor's values and pure policies: per-stage job options (the `[slurm]` table of the
settings), the `sbatch` command line and batch script of one container job, and what Slurm's job
states mean for the stage. The adapter (daemon/adapters/slurm.py) runs them."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from daemon.core.errors import ConfigError

# The stages whose containers can run as Slurm jobs; build's podman build stays where the
# repository is (the image then reaches the nodes, see SlurmOptions.image_dir).
SLURM_STAGES = ("build", "validate", "preprocess", "train")
DEFAULT_STAGES = ("validate", "preprocess", "train")


@dataclass(frozen=True)
class JobOptions:
    """What `sbatch` is asked for, per stage; "" / 0 leaves it to the cluster's defaults."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = ""  # Slurm's time limit ("30", "1:30:00", "2-00:00:00"); "" = stage_timeout_s
    cpus: int = 0  # --cpus-per-task
    mem: str = ""  # --mem, e.g. "8G"
    gres: str = ""  # --gres, e.g. "gpu:1"
    constraint: str = ""
    extra: tuple[str, ...] = ()  # further sbatch options, each one argument, e.g. "--exclusive"


_JOB_FIELDS = {f.name: f for f in fields(JobOptions)}


@dataclass(frozen=True)
class SlurmOptions:
    """The `[slurm]` table: defaults for every job, `[slurm.<stage>]` tables over them."""

    defaults: JobOptions = JobOptions()
    per_stage: Mapping[str, JobOptions] = field(default_factory=lambda: MappingProxyType({}))
    stages: tuple[str, ...] = DEFAULT_STAGES  # whose container jobs go to Slurm (the rest run here)
    # A directory the nodes share: `podman save` archives of the run's image, keyed by image ID,
    # which a node without the image loads. "" = every node already has it (one image store, or the
    # daemon's own machine is the node).
    image_dir: Path | None = None
    pending_timeout_s: float = 24 * 3600.0  # a job still waiting in the queue after this is cancelled
    poll_s: float = 1.0  # the longest pause between two looks at a job's state (the first are shorter)

    def for_stage(self, stage: str) -> JobOptions:
        own = self.per_stage.get(stage)
        if own is None:
            return self.defaults
        merged = {n: getattr(own, n) or getattr(self.defaults, n) for n in _JOB_FIELDS}
        return JobOptions(**merged)


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def time_limit_s(text: str) -> float:
    """Slurm's time formats in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; raises ValueError."""
    found = _TIME.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a Slurm time limit (e.g. 30, 1:30:00, 2-00:00:00)")
    days, a, b, c = found.groups()
    n = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, m, s = [*n, 0, 0][:3]
        return float(((int(days) * 24 + h) * 60 + m) * 60 + s)
    if len(n) == 1:
        return float(n[0] * 60)
    if len(n) == 2:
        return float(n[0] * 60 + n[1])
    return float((n[0] * 60 + n[1]) * 60 + n[2])


def minutes(seconds: float) -> str:
    """A time limit for --time, whole minutes, at least one."""
    return str(max(1, math.ceil(seconds / 60)))


def _job_options(where: str, table: Mapping[str, Any]) -> JobOptions:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _JOB_FIELDS:
            raise ConfigError(f"{where}: unknown option {key!r}; known: {', '.join(_JOB_FIELDS)}")
        if key == "cpus":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.cpus must be a whole number >= 0, got {value!r}")
        elif key == "extra":
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f'{where}.extra must be a list of strings, e.g. ["--exclusive"]')
            value = tuple(value)
            bad = [v for v in value if not v.startswith("-")]
            if bad:
                raise ConfigError(f"{where}.extra: {bad[0]!r} is not an sbatch option (--name=value)")
        elif not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
        elif key == "time" and value:
            try:
                time_limit_s(value)
            except ValueError as e:
                raise ConfigError(f"{where}.time: {e}") from e
        values[key] = value
    return JobOptions(**values)


def slurm_options(table: Any, cwd: Path, home: Path) -> SlurmOptions:
    """The settings' `[slurm]` table, checked; every problem is a ConfigError naming the key."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"slurm must be a table ([slurm] in the configuration file), got {table!r}")
    own = {"stages", "image_dir", "pending_timeout_s", "poll_s"}
    per_stage = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    unknown = [k for k in per_stage if k not in SLURM_STAGES]
    if unknown:
        known = ", ".join(SLURM_STAGES)
        raise ConfigError(f"[slurm.{unknown[0]}]: not a stage with containers; stages: {known}")
    defaults = _job_options("slurm", {k: v for k, v in table.items() if k not in own and k not in per_stage})
    options = SlurmOptions(
        defaults=defaults,
        per_stage=MappingProxyType({k: _job_options(f"slurm.{k}", v) for k, v in per_stage.items()}),
    )
    if "stages" in table:
        stages = table["stages"]
        if isinstance(stages, str) or not all(s in SLURM_STAGES for s in stages):
            raise ConfigError(f"slurm.stages must list stages of {', '.join(SLURM_STAGES)}, got {stages!r}")
        options = replace(options, stages=tuple(stages))
    if table.get("image_dir"):
        text = str(table["image_dir"])
        text = str(home) + text[1:] if text == "~" or text.startswith("~/") else text
        options = replace(options, image_dir=cwd / text)
    seconds = {key: _seconds(key, table[key]) for key in ("pending_timeout_s", "poll_s") if key in table}
    return replace(options, **seconds)  # type: ignore[arg-type]


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"slurm.{key} must be a positive number of seconds, got {value!r}")
    return float(value)


def sbatch_argv(
    name: str,
    comment: str,
    options: JobOptions,
    time_limit: str,
    output: Path,
    error: Path,
    script: Path,
) -> tuple[str, ...]:
    """`sbatch` for one container job: its ID printed alone (--parsable), never requeued by Slurm (a
    node failure or preemption fails the stage, whose retry is retraind's), its output in the run
    directory, named and commented so that recovery finds it."""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--comment={comment}",
        f"--output={output}",
        f"--error={error}",
        f"--chdir={script.parent}",
        "--no-requeue",
        "--nodes=1",
        "--ntasks=1",
        f"--time={time_limit}",
    ]
    flags = (
        ("partition", "--partition"),
        ("account", "--account"),
        ("qos", "--qos"),
        ("cpus", "--cpus-per-task"),
        ("mem", "--mem"),
        ("gres", "--gres"),
        ("constraint", "--constraint"),
    )
    argv += [f"{flag}={getattr(options, key)}" for key, flag in flags if getattr(options, key)]
    return (*argv, *options.extra, str(script))


def batch_script(
    name: str, image: str, podman_run: Sequence[str], archive: Path | None, stop_s: float
) -> str:
    """The job's script: the image loaded if the node lacks it (from the shared archive, by image
    ID), then the container, stopped by name when Slurm signals the job (scancel, time limit), so
    that it never outlives the job whatever the node's process tracking sees of it."""
    q = shlex.quote
    return f"""#!/bin/bash
# retraind: container {name}, one Slurm job (generated; docs/scale-out.md)
set -u
# The daemon's runtime directory may not exist on this node; podman then uses /tmp/podman-run-UID.
if [ -n "${{XDG_RUNTIME_DIR:-}}" ] && [ ! -w "$XDG_RUNTIME_DIR" ]; then unset XDG_RUNTIME_DIR; fi
name={q(name)}
image={q(image)}
archive={q(str(archive) if archive else "")}
if ! podman image exists "$image"; then
  if [ -z "$archive" ] || [ ! -r "$archive" ]; then
    echo "retraind: image $image is not on $(hostname) and no archive of it is shared (slurm.image_dir)" >&2
    exit 125
  fi
  echo "retraind: loading image $image on $(hostname) from $archive" >&2
  podman load --quiet --input "$archive" >/dev/null || exit 125
fi
pid=
stop() {{
  podman stop --ignore --time={int(stop_s)} "$name" >/dev/null 2>&1
  [ -n "$pid" ] && wait "$pid"
  exit 143
}}
trap stop TERM INT
{" ".join(q(a) for a in podman_run)} &
pid=$!
wait "$pid"
"""


# Slurm's job states (squeue/scontrol JobState), by what they mean for the stage.
PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING"})
EXITED_STATES = frozenset({"COMPLETED", "FAILED"})  # the script ran to its own exit code
CANCELLED = "CANCELLED"
# Slurm ended the job: the stage failed for Slurm's reason, never for its own code.
SLURM_ENDED = {
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "lost its node",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "could not boot its node",
    "DEADLINE": "missed its deadline",
    "OUT_OF_MEMORY": "ran out of memory",
    CANCELLED: "was cancelled",
    "REVOKED": "was revoked",
    "SPECIAL_EXIT": "ended in a special exit",
}

LOST_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})  # the node went away, not the code


@dataclass(frozen=True)
class JobState:
    """One look at a job: `scontrol show job --oneliner ID`, the fields we read."""

    job_id: str
    state: str  # JobState's first word (CANCELLED, not "CANCELLED by 0")
    reason: str  # Reason (None while there is none)
    exit_code: int  # the script's exit code (ExitCode=rc:signal)
    signal: int
    node: str  # NodeList ("" while pending)
    partition: str
    time_limit: str
    detail: str  # the rest of JobState ("by 0") and a non-trivial Reason

    @property
    def done(self) -> bool:
        return self.state not in PENDING_STATES and self.state not in RUNNING_STATES

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES


_FIELD = re.compile(r"(\w+)=(\S*)")


def parse_job(text: str) -> JobState | None:
    """`scontrol show job --oneliner ID`'s line (None when it names no job)."""
    found = dict(_FIELD.findall(text))
    if "JobId" not in found or "JobState" not in found:
        return None
    words = re.search(r"JobState=(\S+)((?: (?!\w+=)\S+)*)", text)
    rest = words.group(2).strip() if words else ""
    code, _, sig = found.get("ExitCode", "0:0").partition(":")
    reason = found.get("Reason", "None")
    return JobState(
        job_id=found["JobId"],
        state=found["JobState"],
        reason=reason,
        exit_code=int(code) if code.isdigit() else 0,
        signal=int(sig) if sig.isdigit() else 0,
        node=found.get("NodeList", "") if found.get("NodeList") != "(null)" else "",
        partition=found.get("Partition", ""),
        time_limit=found.get("TimeLimit", ""),
        detail=rest,
    )


def ended_by_slurm(job: JobState) -> str | None:
    """Why Slurm ended a job that did not exit on its own (None: the script's exit code stands)."""
    if job.state in EXITED_STATES:
        return None
    what = SLURM_ENDED.get(job.state, f"ended {job.state}")
    parts = [f"slurm job {job.job_id} {what} ({job.state}"]
    if job.detail:
        parts.append(f" {job.detail}")
    if job.reason and job.reason != "None":
        parts.append(f", reason {job.reason}")
    if job.state == "TIMEOUT" and job.time_limit:
        parts.append(f", time limit {job.time_limit}")
    if job.node:
        parts.append(f", node {job.node}")
    return "".join(parts) + ")"


def poll_delays(longest: float) -> Sequence[float]:
    """The pauses between looks at a job: short at first (most stages take seconds), then `longest`."""
    out, d = [], 0.1
    while d < longest:
        out.append(d)
        d *= 2
    return out
