"""Podman behind the `ContainerRunner` seam: pure argv builders and the CLI adapter that runs them."""

from __future__ import annotations

import os
from pathlib import Path

from daemon.adapters.proc import run_cmd
from daemon.core.errors import (
    CommandTimeoutError,
    InfrastructureError,
    StageTimeoutError,
)
from daemon.core.jobs import IMAGE_UID, IMAGE_USER, LABEL, STAGE_LABEL, BuildJob, CmdResult, ContainerJob


def run_argv(job: ContainerJob, *, rootless: bool) -> tuple[str, ...]:
    """`podman run` for a job: no capabilities, no privilege gain, an init to forward signals."""
    argv = [
        "podman",
        "run",
        "--rm",
        "--pull=never",
        "--init",
        f"--name={job.name}",
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--tmpfs=/tmp:rw,size=1g",
    ]
    # Rootless: map the image user onto the invoking user, so it can write the output mounts
    # (plain keep-id leaves USER 10001 on a subordinate UID that cannot). Rootful: never root.
    argv.append(f"--userns=keep-id:uid={IMAGE_UID},gid={IMAGE_UID}" if rootless else f"--user={IMAGE_USER}")
    argv.append("--network=host" if job.network else "--network=none")
    if job.read_only_root:
        argv.append("--read-only")
    argv += [f"--label={k}={v}" for k, v in sorted({LABEL: "1", **job.labels}.items())]
    argv += [f"--env={k}={v}" for k, v in sorted(job.env.items())]
    for m in job.mounts:
        argv.append(f"--volume={m.host}:{m.container}:{'rw' if m.writable else 'ro'}")
    return (*argv, job.image, *job.argv)


def build_argv(job: BuildJob) -> tuple[str, ...]:
    """`podman build` with --timestamp 0 so identical inputs give identical image IDs."""
    argv = [
        "podman",
        "build",
        "--timestamp=0",
        "--pull=never",
        f"--file={job.containerfile}",
        f"--tag={job.tag}",
    ]
    argv += [f"--build-arg={k}={v}" for k, v in sorted(job.build_args.items())]
    argv += [f"--label={k}={v}" for k, v in sorted(job.labels.items())]
    if job.iidfile is not None:
        argv.append(f"--iidfile={job.iidfile}")
    if job.no_cache:
        argv.append("--no-cache")
    return (*argv, str(job.context))


def stop_argv(name: str, stop_timeout_s: float) -> tuple[str, ...]:
    """SIGTERM to the container's init, SIGKILL after stop_timeout_s; a container gone is fine."""
    return ("podman", "stop", "--ignore", f"--time={int(stop_timeout_s)}", name)


def rm_argv(name: str) -> tuple[str, ...]:
    return ("podman", "rm", "-f", "--ignore", name)


class PodmanCli:
    """The real `ContainerRunner`: the podman CLI through `run_cmd`."""

    def __init__(self, *, rootless: bool | None = None, stop_timeout_s: float = 10.0) -> None:
        """stop_timeout_s: how long a timed-out container has between SIGTERM and SIGKILL."""
        self.rootless = os.geteuid() != 0 if rootless is None else rootless
        self.stop_timeout_s = stop_timeout_s

    def build(self, job: BuildJob, log_path: Path) -> CmdResult:
        """Past its timeout `podman build` gets SIGTERM, on which it stops its build containers."""
        try:
            return run_cmd(build_argv(job), timeout=job.timeout_s, log_path=log_path)
        except CommandTimeoutError as e:
            stopped = f"podman build stopped with SIGTERM; log: {log_path}"
            raise StageTimeoutError("build", job.timeout_s, stopped) from e

    def run(self, job: ContainerJob, log_path: Path) -> CmdResult:
        """Past its timeout the container is stopped and removed by name, then the client reaped."""
        self.own_outputs(job)
        try:
            return run_cmd(
                run_argv(job, rootless=self.rootless),
                timeout=job.timeout_s,
                log_path=log_path,
                on_timeout=lambda: self.remove(job.name),
            )
        except CommandTimeoutError as e:
            stopped = f"container {job.name} stopped and removed; log: {log_path}"
            raise StageTimeoutError(job.labels.get(STAGE_LABEL, job.name), job.timeout_s, stopped) from e

    def own_outputs(self, job: ContainerJob) -> None:
        """Rootful, the image user must own the directories it writes (rootless maps it onto us)."""
        if not self.rootless:
            for m in job.mounts:
                if m.writable:
                    os.chown(m.host, IMAGE_UID, IMAGE_UID)

    def start(self, job: ContainerJob, log_path: Path) -> str:
        """The job in the background (`podman run -d`): its container ID. It is kept when it
        exits, so that its log (`podman logs NAME`) says why; `remove` stops and removes it."""
        self.own_outputs(job)
        argv = [a for a in run_argv(job, rootless=self.rootless) if a != "--rm"]
        result = run_cmd((*argv[:2], "--detach", *argv[2:]), timeout=120, log_path=log_path)
        if result.returncode != 0:
            raise InfrastructureError(f"podman could not start {job.name}: {result.tail()}")
        return result.stdout.strip().splitlines()[-1]

    def running(self, name: str) -> bool:
        result = run_cmd(("podman", "inspect", "--format={{.State.Running}}", name), timeout=60)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def logs(self, name: str, tail: int = 40) -> str:
        """The last lines a container wrote ("" once it is gone)."""
        result = run_cmd(("podman", "logs", f"--tail={tail}", name), timeout=60)
        return (result.stdout + result.stderr).strip() if result.returncode == 0 else ""

    def remove(self, name: str) -> None:
        """`podman stop -t N NAME`, then `podman rm -f NAME`: never a SIGKILL of the client, which
        cannot pass it on. A container already gone is not an error."""
        run_cmd(stop_argv(name, self.stop_timeout_s), timeout=self.stop_timeout_s + 60)
        removed = run_cmd(rm_argv(name), timeout=120)
        if removed.returncode != 0:
            raise InfrastructureError(f"podman rm -f {name} failed: {removed.tail()}")

    def image_id(self, ref: str) -> str | None:
        result = run_cmd(("podman", "image", "inspect", "--format={{.Id}}", ref), timeout=60)
        return result.stdout.strip() if result.returncode == 0 else None

    def stop_labelled(self, label: str = LABEL, stop_timeout_s: float = 5) -> list[str]:
        """Stop (SIGTERM, SIGKILL after the timeout) and remove every container with the label."""
        found = run_cmd(("podman", "ps", "-aq", f"--filter=label={label}"), timeout=60)
        if found.returncode != 0:
            raise InfrastructureError(f"podman ps failed: {found.tail()}")
        ids = found.stdout.split()
        if ids:
            run_cmd(("podman", "stop", f"--time={int(stop_timeout_s)}", *ids), timeout=stop_timeout_s + 60)
            run_cmd(("podman", "rm", "-f", "--ignore", *ids), timeout=120)
        return ids

    def placements(self, run_id: str) -> dict[str, str]:
        """Every container ran here: nothing to say."""
        return {}

    def save(self, ref: str, archive: Path) -> None:
        """`podman save` one image, with its name, to a docker-archive (load keeps the image ID)."""
        result = run_cmd(save_argv(ref, archive), timeout=1800)
        if result.returncode != 0:
            raise InfrastructureError(f"podman save {ref} failed: {result.tail()}")

    def load(self, archive: Path) -> str:
        """`podman load` an archive; what podman says it loaded."""
        result = run_cmd(("podman", "load", f"--input={archive}"), timeout=1800)
        if result.returncode != 0:
            raise InfrastructureError(f"podman load {archive} failed: {result.tail()}")
        return result.stdout.strip()

    def tag(self, image: str, ref: str) -> None:
        result = run_cmd(("podman", "tag", image, ref), timeout=60)
        if result.returncode != 0:
            raise InfrastructureError(f"podman tag {image} {ref} failed: {result.tail()}")


def save_argv(ref: str, archive: Path) -> tuple[str, ...]:
    return ("podman", "save", "--format=docker-archive", f"--output={archive}", ref)
