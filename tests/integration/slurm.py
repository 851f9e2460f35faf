"""A real single-node Slurm cluster for integration tests: munged, slurmctld and slurmd as the current
user (root or not), in a private directory, on free ports.

Debian 12's slurm-wlm 22.05 and munge (tools/setup.sh --dev). Nothing system-wide is used or
touched: the munge key, socket, pid and seed files, slurm.conf, the controller's state, slurmd's
spool (job scripts), pid files and logs are all under `SlurmCluster.base`, which stop() removes.
A client (sbatch, srun, squeue, scancel, scontrol, sinfo) finds the cluster through SLURM_CONF, in
`cluster.env`; slurm.conf names the munge socket (AuthInfo=socket=...), so the clients, slurmd and
slurmstepd all authenticate against this cluster's munged.

Not as root, SlurmUser and SlurmdUser are the current user: slurmd then runs that user's jobs
(slurmstepd has nothing to drop), and only that user's. A job of another user fails at launch
(`chown(<spool>/jobNNNNN): Operation not permitted`, held with launch_failed_requeued_held). The
daemons live in /usr/sbin, which an unprivileged user's PATH usually lacks: they are looked up there.

Timings (tests/integration/test_slurm_cluster.py measures them): the controller starts batch jobs
from its background thread, which runs once a second; batch_sched_delay=0 lets it schedule on
every tick (Slurm's default, 3 s, delayed the start of back-to-back jobs by up to 3 s). Time limits
are whole minutes and checked every 30 s, so a --time=1 job ends 60 to 90 s after it started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.integration.services import (
    LOCALHOST,
    POLL_S,
    ServiceError,
    free_port,
    log_tail,
    missing,
    spawn,
    terminate,
)

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")
SBIN = ("/usr/sbin", "/sbin")  # where Debian puts the daemons, off an unprivileged user's PATH
PARTITIONS = ("cpu", "train")  # cpu is the default
FINISHED = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT",
})  # fmt: skip
# Environment variables that steer the Slurm clients: inherited from a shell (or from a Slurm job
# running the tests), they would send srun into another job or change squeue's output format.
CLIENT_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_", "SCANCEL_", "SCONTROL_")
# Settings for tests: short kill grace, finished jobs kept 5 minutes, no slack over time limits, and
# a scheduler that starts a job on its next one-second tick.
TIMING = {
    "KillWait": "5",
    "MinJobAge": "300",
    "OverTimeLimit": "0",
    "InactiveLimit": "0",
    "SlurmctldTimeout": "30",
    "SlurmdTimeout": "30",
    "SchedulerType": "sched/backfill",
    "SchedulerParameters": "batch_sched_delay=0,sched_min_interval=0",
}


def find(name: str) -> str | None:
    """The path of a Slurm or munge program: on PATH, else in /usr/sbin or /sbin."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN]))


def absent() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS, "munge") if find(name) is None]


def client_environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without inherited Slurm client settings, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_ENV_PREFIXES)}
    return {**env, **extra}


_KEY = re.compile(r"(?:^|\s)([A-Z][A-Za-z0-9_/:]*)=")


def parse_record(line: str) -> dict[str, str]:
    """One line of `scontrol show ... -o` as a dict. A key starts with a capital letter: a value
    with spaces (Comment=run=1 stage=train) stays whole while its words do not look like keys."""
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(line))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        fields[m.group(1)] = line[m.end() : end].strip()
    return fields


def machine() -> dict[str, str]:
    """What `slurmd -C` finds here: CPUs, Boards, SocketsPerBoard, CoresPerSocket, ThreadsPerCore,
    RealMemory (MB)."""
    slurmd = find("slurmd")
    assert slurmd is not None
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    return parse_record(out.splitlines()[0])


class SlurmCluster:
    """One node (this host's short name, at 127.0.0.1) in partitions `cpu` (default) and `train`.

    start() writes the configuration, starts munged, slurmctld and slurmd, waits until sinfo
    shows the node idle in every partition and a first batch job has completed; stop() cancels
    what is left, stops the daemons, kills any process left over from a job and removes `base`.

    For tests: `env` ({"SLURM_CONF": ...}) to add to a client's environment, or `client_env()`
    for a whole one; `run()` a client; `sbatch()`, `job()` (scontrol's record), `wait_job()`,
    `queue()`. `node`, `partitions`, `default_partition`, `user`, `cpus`, `real_memory`; paths
    `base`, `conf`, `munge_socket`, `state`, `spool`, `logs`.
    """

    def __init__(self, base: Path | None = None) -> None:
        """base: a directory to create (or an empty one) for everything of the cluster; by default
        a new one in /tmp. Keep it short: munged's and slurmd's unix sockets live in it (108 bytes
        at most for a socket's path)."""
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="retraind-slurm-", dir="/tmp"))
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            raise ValueError(f"{base} is not empty: the cluster removes its directory when it stops")
        self.base = base
        self.base.chmod(0o700)
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.node = socket.gethostname().split(".")[0]
        self.partitions = PARTITIONS
        self.default_partition = PARTITIONS[0]
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        self.conf = self.base / "slurm.conf"
        self.munge_dir = self.base / "munge"
        self.munge_key = self.munge_dir / "munge.key"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.state = self.base / "state"
        self.spool = self.base / "spool"
        # munged's and slurmctld's output; slurmd's log (slurmstepd's too) and its output (which
        # repeats the log, after any error from before it could open the log).
        self.logs = {name: self.base / f"{name}.log" for name in DAEMONS}
        self.slurmd_out = self.base / "slurmd.out"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.cpus = 0
        self.real_memory = 0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- configuration ---------------------------------------------------------------------

    def slurm_conf(self, hw: dict[str, str]) -> str:
        node = (
            f"NodeName={self.node} NodeHostname={self.node} NodeAddr={LOCALHOST} CPUs={self.cpus} "
            f"Boards={hw.get('Boards', '1')} SocketsPerBoard={hw.get('SocketsPerBoard', '1')} "
            f"CoresPerSocket={hw.get('CoresPerSocket', self.cpus)} "
            f"ThreadsPerCore={hw.get('ThreadsPerCore', '1')} RealMemory={self.real_memory} State=UNKNOWN"
        )
        settings = {
            "ClusterName": "retraind-test",
            "SlurmctldHost": f"{self.node}({LOCALHOST})",
            "SlurmUser": self.user,
            "SlurmdUser": self.user,
            "SlurmctldPort": str(self.ctld_port),
            "SlurmdPort": str(self.slurmd_port),
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": str(self.state),
            "SlurmdSpoolDir": str(self.spool),
            "SlurmctldPidFile": str(self.base / "slurmctld.pid"),
            "SlurmdPidFile": str(self.base / "slurmd.pid"),
            "SlurmdLogFile": str(self.logs["slurmd"]),
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            # No systemd, no cgroup plugins: processes are tracked by parentage (/proc).
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",  # memory is not consumed: jobs without --mem share the node
            "SwitchType": "switch/none",
            "MpiDefault": "none",
            "ReturnToService": "2",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MailProg": "/bin/true",
            **TIMING,
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines.append(node)
        for name in self.partitions:
            default = "YES" if name == self.default_partition else "NO"
            lines.append(
                f"PartitionName={name} Nodes={self.node} Default={default} MaxTime=INFINITE State=UP"
            )
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        hw = machine()
        self.cpus = int(hw["CPUs"])
        self.real_memory = int(hw["RealMemory"]) * 9 // 10  # less than slurmd sees, or it drains the node
        for d in (self.munge_dir, self.state, self.spool):
            d.mkdir(mode=0o700)
        self.munge_key.write_bytes(secrets.token_bytes(128))  # what `mungekey -c` makes: 1024 bits
        self.munge_key.chmod(0o600)
        self.conf.write_text(self.slurm_conf(hw))

    # --- processes -------------------------------------------------------------------------

    def _daemon_env(self) -> dict[str, str]:
        """A plain environment with SLURM_CONF: slurmstepd inherits it, so every process of the
        cluster carries it (the sweep in stop() finds leftovers by it)."""
        keep = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        return {**env, **self.env}

    def _spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("a") as out:
            out.write(f"--- {' '.join(argv)}\n")
        proc = spawn(argv, log, self._daemon_env())
        self._procs[name] = proc
        return proc

    def _program(self, name: str) -> str:
        path = find(name)
        if path is None:
            raise ServiceError(name, "not installed (apt-get install slurm-wlm munge)", None)
        return path

    def client_env(self) -> dict[str, str]:
        """A complete environment for a client of this cluster (sbatch, squeue, retraind with the
        Slurm executor): this process's, without inherited Slurm client settings, plus `env`."""
        return client_environ(self.env)

    def run(self, *argv: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A client command against this cluster (text output captured)."""
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=check,
            env=self.client_env(),
        )  # fmt: skip

    def _answers(self, *argv: str) -> str | None:
        try:
            result = self.run(*argv, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return None
        return result.stdout if result.returncode == 0 else None

    def _munge_ready(self) -> bool:
        if not self.munge_socket.exists():
            return False
        munge = self._program("munge")
        probe = subprocess.run(
            [munge, "--socket", str(self.munge_socket), "--no-input"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return probe.returncode == 0

    def _ctld_ready(self) -> bool:
        out = self._answers("scontrol", "ping")
        return out is not None and "is UP" in out

    def _node_idle(self) -> bool:
        out = self._answers("sinfo", "-h", "-N", "-o", "%P %T")
        if out is None:
            return False
        states = dict(line.split() for line in out.splitlines() if line.strip())
        names = {self.default_partition + "*", *self.partitions[1:]}
        return set(states) == names and all(state == "idle" for state in states.values())

    def _probe_job(self) -> Callable[[], bool]:
        """A first batch job, `true`, waited for: it proves munge, slurmctld, slurmd and slurmstepd
        run this user's jobs, and it waits out the controller's first scheduling pass, about 3 s
        after it started (a job submitted before then waits for it)."""
        job_id = self.sbatch("-J", "cluster-probe", "-o", "/dev/null", "--wrap", "true")

        def done() -> bool:
            state = self.job(job_id).get("JobState")
            if state in FINISHED and state != "COMPLETED":
                raise self._failure("slurmd", f"the probe job {job_id} ended {state}: {self.job(job_id)}")
            return state == "COMPLETED"

        return done

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float) -> float:
        started = time.monotonic()
        proc = self._procs[name]
        while not ready():
            if time.monotonic() - started > timeout:
                raise self._failure(name, f"not ready after {timeout:.0f} s")
            try:
                code = proc.wait(POLL_S)
            except subprocess.TimeoutExpired:
                continue
            raise self._failure(name, f"exited with status {code} before it was ready")
        return time.monotonic() - started

    def _failure(self, name: str, problem: str) -> ServiceError:
        """A ServiceError ending with the tails of every log of the cluster (the failing one's last)."""
        logs = dict(self.logs)
        if not logs["slurmd"].exists() or not logs["slurmd"].stat().st_size:
            logs["slurmd"] = self.slurmd_out  # it failed before it opened its log
        others = [log for key, log in logs.items() if key != name and log.exists()]
        tails = "".join(f"\n--- last lines of {log} ---\n{log_tail(log, 15)}" for log in others)
        return ServiceError(f"slurm cluster: {name}", problem + tails, logs[name])

    def start(self, timeout: float = 90.0) -> float:
        """Configure and start the cluster, wait until it has run a first job (about 3.5 s);
        returns the seconds taken. On failure every daemon is stopped and a ServiceError carries
        the tails of the logs."""
        started = time.monotonic()
        programs = {name: self._program(name) for name in (*DAEMONS, *CLIENTS, "munge")}
        self._write_config()
        try:
            self._spawn("munged", [
                programs["munged"], "--foreground", "--force",
                f"--key-file={self.munge_key}", f"--socket={self.munge_socket}",
                f"--pid-file={self.munge_dir / 'munged.pid'}",
                f"--seed-file={self.munge_dir / 'munged.seed'}", f"--log-file={self.logs['munged']}",
            ], self.logs["munged"])  # fmt: skip
            self._wait("munged", self._munge_ready, timeout)
            self._spawn(
                "slurmctld", [programs["slurmctld"], "-D", "-f", str(self.conf)], self.logs["slurmctld"]
            )
            self._wait("slurmctld", self._ctld_ready, timeout)
            self._spawn(
                "slurmd",
                [programs["slurmd"], "-D", "-f", str(self.conf), "-N", self.node],
                self.slurmd_out,
            )
            self._wait("slurmd", self._node_idle, timeout)
            self._wait("slurmd", self._probe_job(), timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    # --- jobs ------------------------------------------------------------------------------

    def sbatch(self, *args: str) -> str:
        """sbatch --parsable ARGS; returns the job ID."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return out.split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job -o ID` as a dict (JobState, Reason, ExitCode, Partition, ...); the
        controller keeps a finished job for MinJobAge (300 s)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return parse_record(out.strip())

    def wait_job(self, job_id: str, timeout: float, states: Iterable[str] = FINISHED) -> dict[str, str]:
        """Poll scontrol every 0.2 s until the job's JobState is one of states; returns the record."""
        wanted = frozenset(states)
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record.get("JobState") in wanted:
                return record
            if time.monotonic() > deadline:
                raise self._failure(
                    "slurmd", f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s: {record}"
                )
            threading.Event().wait(POLL_S)

    def queue(self) -> list[str]:
        """IDs of the jobs squeue shows (pending, running, completing)."""
        out = self._answers("squeue", "-h", "-o", "%i")
        return out.split() if out else []

    # --- stop ------------------------------------------------------------------------------

    def _cancel_all(self, timeout: float) -> None:
        if not self._ctld_ready():
            return
        jobs = self.queue()
        if jobs:
            self.run("scancel", *jobs, check=False)
        deadline = time.monotonic() + timeout
        while self.queue() and time.monotonic() < deadline:
            threading.Event().wait(POLL_S)

    def leftovers(self) -> list[int]:
        """Live processes (not zombies) whose environment names this cluster's slurm.conf: the
        daemons, slurmstepd, and what jobs started, even daemonized (this user's: /proc/PID/environ
        is private). Not a container's conmon: podman starts it with an environment of its own."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                if marker in proc.joinpath("environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except (OSError, IndexError):
                continue
        return [pid for pid in found if pid != os.getpid()]

    def stop(self) -> None:
        """Cancel every job, stop slurmd, slurmctld and munged, kill leftovers, remove base."""
        with contextlib.suppress(Exception):
            if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
                self._cancel_all(timeout=int(TIMING["KillWait"]) + 15)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                terminate(proc)
        self._procs.clear()
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster for the session (per xdist worker), run by the test's user.
    Tests must leave no job behind (cancel what they start)."""
    gone = absent()
    if gone:
        missing(f"Slurm and munge ({', '.join(gone)}; apt-get install slurm-wlm munge)")
    cluster = SlurmCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
