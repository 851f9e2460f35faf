"""Benchmark the idle daemon: RSS and wake-ups per second of `retraind watch` doing nothing.

Starts the real daemon on this checkout (its runs build HEAD, as `retraind run` does: uncommitted
edits do not count; a commit during the window wakes it) and a data directory in a temp dir,
with a systemd-like notify socket (NOTIFY_SOCKET, WATCHDOG_USEC as the unit's WatchdogSec=60
gives) and the metrics endpoint on, waits until it is ready (READY=1 and its own status: idle,
nothing queued or pending), then samples /proc/<pid>/status and /proc/<pid>/task/*/status over the
idle window: VmRSS, and voluntary + nonvoluntary context switches of every thread (a thread that
sleeps and wakes costs at least one). The baseline is a bare `python -c` importing nothing, in the
same run. By default the state is up to date (one `retraind run` first, as a daemon restarted after
a run sees it); --empty skips that run and watches an empty data directory.

Targets (issue 15): RSS <= 100 MB, at most one wake-up a second.

Usage: .venv/bin/python bench/idle.py [--seconds 60] [--empty]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.adapters.control import request
from daemon.core.errors import InfrastructureError
from daemon.engine.service import HEAVY_MODULES

ROOT = Path(__file__).resolve().parent.parent
RETRAIND = str(Path(sys.executable).parent / "retraind")
TARGET_RSS_MB, TARGET_WAKEUPS = 100.0, 1.0
WATCHDOG_USEC = 60_000_000  # systemd/retraind.service: WatchdogSec=60
HEAVY = (*HEAVY_MODULES, "alembic", "flask")
SYSCALLS = {
    0: "read", 7: "poll", 23: "select", 43: "accept", 45: "recvfrom", 61: "wait4", 202: "futex",
    232: "epoll_wait", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 288: "accept4",
}  # fmt: skip


@dataclass(frozen=True)
class Sample:
    rss_kb: int
    switches: dict[int, int]  # tid -> voluntary + nonvoluntary context switches


def status_fields(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def sample(pid: int) -> Sample:
    rss = int(status_fields(Path(f"/proc/{pid}/status"))["VmRSS"].split()[0])
    switches = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = status_fields(task / "status")
        except OSError:  # the thread ended between listing and reading
            continue
        switches[int(task.name)] = int(f["voluntary_ctxt_switches"]) + int(f["nonvoluntary_ctxt_switches"])
    return Sample(rss, switches)


def waiting_in(pid: int, tid: int) -> str:
    """The system call a thread is blocked in (/proc/.../syscall), and its timeout if it has one."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
    except OSError:
        return "?"
    if not fields or not fields[0].isdigit():
        return fields[0] if fields else "?"
    name = SYSCALLS.get(int(fields[0]), f"syscall {fields[0]}")
    timed = {"futex": 4, "poll": 3, "ppoll": 3, "select": 5, "epoll_wait": 4, "pselect6": 5}
    if name in timed and len(fields) > timed[name]:
        name += " (no timeout)" if int(fields[timed[name]], 16) in (0, 0xFFFFFFFF) else " (timed)"
    return name


def wait_for(check: Callable[[], Any], what: str, timeout: float, alive: Callable[[], bool]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if not alive():
            raise SystemExit(f"the daemon exited while waiting for {what}")
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def daemon_status(state: Path) -> dict[str, Any] | None:
    try:
        reply = request(state / "control.sock", {"cmd": "status"}, timeout_s=30)
    except InfrastructureError:
        return None
    return reply if reply.get("ok") else None


def is_idle(s: dict[str, Any] | None) -> bool:
    return (
        s is not None
        and s.get("running") is None
        and s.get("queue_depth") == 0
        and not s.get("pending_changes")
    )


def baseline_rss_kb() -> int:
    """A bare interpreter that imports nothing, blocked on stdin."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)  # a measurement, not readiness: the interpreter has finished starting
        return sample(proc.pid).rss_kb
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def native_packages(pid: int) -> list[str]:
    """Installed packages whose compiled code is mapped into the process (/proc/<pid>/maps)."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        _, sep, rest = line.partition("/site-packages/")
        if sep:
            found.add(rest.split("/")[0].split(".")[0])
    return sorted(found)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="idle window")
    p.add_argument("--empty", action="store_true", help="an empty data directory, no run first")
    args = p.parse_args()
    base_kb = baseline_rss_kb()
    with tempfile.TemporaryDirectory(prefix="retraind-idle-") as tmp_name:
        tmp = Path(tmp_name)
        repo, data, state = ROOT, tmp / "data", tmp / "state"  # runs build HEAD, never the worktree
        data.mkdir()
        (tmp / "retraind.toml").touch()  # empty: only the flags below count
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        env.update(RETRAIND_CONFIG=str(tmp / "retraind.toml"), PYTHONUNBUFFERED="1")
        flags = ["--json", "--repo", str(repo), "--data-dir", str(data), "--state-dir", str(state)]
        if not args.empty:
            shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
            done = subprocess.run([RETRAIND, "run", *flags], capture_output=True, text=True, env=env)
            if done.returncode not in (0, 3):  # trained, or refused by the gate: either way attempted
                raise SystemExit(f"retraind run exited {done.returncode}:\n{done.stdout[-3000:]}")
            print(f"first, retraind run: exit {done.returncode} (so the daemon's start-up run is up to date)")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify.sock"))
        notify.settimeout(0.1)
        env.update(
            NOTIFY_SOCKET=str(tmp / "notify.sock"),
            WATCHDOG_USEC=str(WATCHDOG_USEC),
            RETRAIND_METRICS_PORT=str(free_port()),
        )
        log = (tmp / "daemon.log").open("w")
        proc = subprocess.Popen([RETRAIND, "watch", *flags], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            measure(proc, state, notify, base_kb, args.seconds)
        finally:
            proc.terminate()
            code = proc.wait(60)
            log.close()
            lines = (tmp / "daemon.log").read_text().splitlines()
            errors = [line for line in lines if '"level": "error"' in line or not line.startswith("{")]
            print(f"daemon exit code after SIGTERM: {code}; log lines {len(lines)}, errors {len(errors)}")
            events = [json.loads(line).get("event", "?") for line in lines if line.startswith("{")]
            print(f"  its events: {', '.join(events)}")
            for line in errors[:5]:
                print(f"  {line[:300]}")


def pings(notify: socket.socket) -> list[tuple[float, str]]:
    """Every notify message waiting (or arriving within the socket's timeout), with when it came."""
    got: list[tuple[float, str]] = []
    while True:
        try:
            message = notify.recv(4096).decode()
        except (TimeoutError, BlockingIOError):
            return got
        got.append((time.monotonic(), message))


def idle_status(state: Path) -> dict[str, Any] | None:
    s = daemon_status(state)
    return s if is_idle(s) else None


def measure(
    proc: subprocess.Popen[bytes], state: Path, notify: socket.socket, base_kb: int, seconds: float
) -> None:
    def alive() -> bool:
        return proc.poll() is None

    started = time.monotonic()
    messages: list[tuple[float, str]] = []

    def ready() -> bool:
        messages.extend(pings(notify))
        return any("READY=1" in m for _, m in messages)

    wait_for(ready, "READY=1", 300, alive)
    status = wait_for(lambda: idle_status(state), "idle status", 600, alive)
    print(f"ready (READY=1 and an idle status) after {time.monotonic() - started:.1f} s")
    notify.settimeout(0.5)
    slices = [(time.monotonic(), sample(proc.pid))]
    while time.monotonic() - slices[0][0] < seconds:
        messages.extend(pings(notify))  # blocks up to 0.5 s: the bench's own pace, not the daemon's
        if time.monotonic() - slices[-1][0] >= 10 or time.monotonic() - slices[0][0] >= seconds:
            slices.append((time.monotonic(), sample(proc.pid)))
    report(proc.pid, status, slices, [t for t, m in messages if "WATCHDOG=1" in m], base_kb)


def report(
    pid: int, status: dict[str, Any], slices: list[tuple[float, Sample]], watchdog: list[float], base_kb: int
) -> None:
    (t0, first), (t1, last) = slices[0], slices[-1]
    elapsed = t1 - t0
    per_tid = {tid: n - first.switches.get(tid, 0) for tid, n in last.switches.items()}
    wakeups = sum(per_tid.values()) / elapsed
    rss_mb = last.rss_kb / 1024
    print(f"idle window {elapsed:.1f} s")
    print(f"baseline: bare python -c, importing nothing  RSS {base_kb / 1024:7.1f} MB")
    print(
        f"idle daemon                                   RSS {rss_mb:7.1f} MB "
        f"({last.rss_kb / base_kb:.1f}x the baseline; {first.rss_kb / 1024:.1f} MB at ready)"
    )
    print(f"wake-ups (context switches of all threads)       {wakeups:7.2f} /s")
    per_slice = []
    for (ta, a), (tb, b) in itertools.pairwise(slices):
        switched = sum(n - a.switches.get(tid, 0) for tid, n in b.switches.items())
        per_slice.append(f"{switched / (tb - ta):.2f}/s")
    print(f"  per 10 s slice: {', '.join(per_slice)}")
    names = {int(t["native_id"]): str(t["name"]) for t in status.get("threads", [])}
    print(f"  {'thread':>8}  {'name':28} {'wake-ups/s':>10}  blocked in")
    for tid in sorted(last.switches):
        rate = per_tid[tid] / elapsed
        print(f"  {tid:>8}  {names.get(tid, '?'):28} {rate:10.2f}  {waiting_in(pid, tid)}")
    pings_in = [t for t in watchdog if t >= t0]
    gap = max((b - a for a, b in itertools.pairwise([t0, *pings_in, t1])), default=elapsed)
    half = WATCHDOG_USEC / 2e6
    print(f"watchdog pings in the window: {len(pings_in)}, longest gap {gap:.1f} s (WatchdogSec 60)")
    native = native_packages(pid)
    heavy = [m for m in HEAVY if m in native or m in status.get("heavy_modules", [])]
    print(f"packages with native code mapped: {', '.join(native) or 'none'}")
    print(f"heavy libraries in the idle daemon: {', '.join(heavy) or 'none'}")
    verdict = {True: "PASS", False: "FAIL"}
    print(f"target RSS <= {TARGET_RSS_MB:.0f} MB: {verdict[rss_mb <= TARGET_RSS_MB]}")
    print(f"target <= {TARGET_WAKEUPS:.0f} wake-up/s: {verdict[wakeups <= TARGET_WAKEUPS]}")
    print(f"a watchdog ping at least every WatchdogSec/2 (+1 s): {verdict[gap <= half + 1]}")


if __name__ == "__main__":
    main()
