"""`retraind serve`: the champion in production, from the image its run was built with, following the
alias blue-green.

For each version it serves, a rootless container of that run's image (no network, read-only root,
no capabilities) runs daemon/container/serve_backend.py on a Unix socket in a bind-mounted
directory; the front (daemon/adapters/serve_front.py) listens on 127.0.0.1 and forwards there. When
the champion moves, the new version is started beside the old one and switched to only once it
answers /health (its warm-up prediction done) and predicts what its registered run recorded;
requests already at the old one finish there, then it is stopped. A version that fails any of that
is never switched to: the old one keeps serving, and the failure is logged, counted and written
to the serve status file `retraind status` reads.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

import daemon
from daemon.adapters.serve_front import Backend, Front, ServeMetrics
from daemon.core.config import Settings
from daemon.core.errors import InfrastructureError, RetraindError
from daemon.core.jobs import ContainerJob, Mount
from daemon.core.scoring import predictions_sha256
from daemon.core.serving import FollowPolicy, Served
from daemon.state.serve_status import ServeStatus, write_status

log = structlog.get_logger()
SERVE_LABEL = "io.retraind.serve"  # every serving container carries it, valued with its version
ADDRESS_LABEL = "io.retraind.serve.address"  # ... and the address of the retraind serve it answers for
PACKAGE_MOUNT = "/opt/retraind-serve"  # the daemon package, read-only: the backend and daemon.core
SOCKET_DIR = "/run/serve"
HEALTH_PROBE = "I love this so much"


SUN_PATH_MAX = 107  # a Unix socket's path, in bytes, before its terminating NUL (sockaddr_un)


def socket_dir(workdir: Path) -> Path:
    """A private directory for the version's socket: workdir/socket, or, when that path would be too
    long for a Unix socket address (a deep state directory), a fresh one under XDG_RUNTIME_DIR or
    /tmp that workdir/socket links to (so removing the version finds it)."""
    inside = workdir / "socket"
    if len(os.fsencode(inside / "backend.sock")) <= SUN_PATH_MAX:
        inside.mkdir(mode=0o700)
        return inside
    for root in (os.environ.get("XDG_RUNTIME_DIR", ""), tempfile.gettempdir()):
        if root and os.path.isdir(root) and len(os.fsencode(root)) + 40 <= SUN_PATH_MAX:
            short = Path(tempfile.mkdtemp(prefix="retraind-serve-", dir=root))  # 0700
            inside.symlink_to(short)
            return short
    raise SwitchFailed(f"no directory short enough for a Unix socket (state directory {workdir})")


class ChampionSource(Protocol):
    def champion(self, name: str) -> Served | None: ...
    def challenger(self, name: str) -> Served | None: ...
    def download_model(self, served: Served, dest: Path) -> Path: ...
    def recorded_predictions(self, served: Served, dest: Path) -> Path | None: ...


class Containers(Protocol):
    def start(self, job: ContainerJob, log_path: Path) -> str: ...
    def remove(self, name: str) -> None: ...
    def logs(self, name: str, tail: int = 40) -> str: ...
    def running(self, name: str) -> bool: ...
    def image_id(self, ref: str) -> str | None: ...


class SwitchFailed(RetraindError):
    """A version could not be started or failed its checks; what serves stays as it was."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("model", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def ask(path: Path, method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One request to a backend's socket: its status and JSON answer."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, url, body=payload, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        conn.close()


class Server:
    """Keeps the champion served: start, check, switch, drain, stop."""

    def __init__(
        self,
        settings: Settings,
        source: ChampionSource,
        containers: Containers,
        front: Front,
        metrics: ServeMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.source, self.containers, self.front = settings, source, containers, front
        self.metrics, self.clock = metrics, clock
        self.root = settings.state_dir / "serve"
        self.policy = FollowPolicy(retry_s=settings.serve_retry_s)
        self.current: tuple[Served, Backend, Path] | None = None
        self.shadow: tuple[Served, Backend, Path] | None = None  # serve_shadow: the challenger
        self.shadow_policy = FollowPolicy(retry_s=settings.serve_retry_s)
        self.stopping = threading.Event()
        self.last_failure: str | None = None

    @property
    def address(self) -> str:
        return f"http://{self.settings.serve_addr}:{self.settings.serve_port}"

    # -- the loop ----------------------------------------------------------------------------
    def follow(self) -> None:
        """Until stop(): look at the champion every serve_poll_s and serve it."""
        while not self.stopping.is_set():
            try:
                self.step()
            except RetraindError as e:  # MLflow away: keep serving what serves, look again later
                log.warning("serve_champion_unknown", error=str(e))
            except Exception as e:  # the loop's last boundary: log once, look again later
                log.error("serve_loop_error", error=str(e), exc_info=e)
            self.stopping.wait(self.settings.serve_poll_s)

    def step(self) -> bool:
        """One look at the registry; True when a new version now serves."""
        switched = self._follow_champion()
        if self.settings.serve_shadow:
            try:
                self._follow_challenger()
            except RetraindError as e:
                log.warning("serve_challenger_unknown", error=str(e))
        return switched

    def _follow_challenger(self) -> None:
        """The challenger in shadow: started through the same checks as a champion, replaced when
        the alias moves, stopped when there is none (or it is the version serving)."""
        challenger = self.source.challenger(self.settings.model_name)
        serving = self.current[0].version if self.current else None
        wanted = challenger if challenger is not None and challenger.version != serving else None
        shadowing = self.shadow[0].version if self.shadow else None
        if wanted is None:
            if self.shadow is not None:
                self._end_shadow(self.front.set_shadow(None))
            return
        if not self.shadow_policy.should_start(wanted, shadowing, self.clock()):
            return
        try:
            backend, workdir = self._launch(wanted, "shadow-")
        except Exception as e:  # the served version is not affected
            self.shadow_policy.failed(wanted.version, self.clock())
            log.error("serve_shadow_failed", version=wanted.version, error=str(e))
            return
        self.shadow_policy.started()
        self._end_shadow(self.front.set_shadow(backend))
        self.shadow = (wanted, backend, workdir)
        log.info("serve_shadow_started", version=wanted.version, serving=serving)
        self._write_status()

    def _end_shadow(self, old: Backend | None) -> None:
        if old is None or self.shadow is None:
            return
        self.front.drained(old, 5.0)
        self._remove(old.container, self.shadow[2])
        log.info("serve_shadow_stopped", version=old.version)
        self.shadow = None
        self._write_status()

    def _follow_champion(self) -> bool:
        champion = self.source.champion(self.settings.model_name)
        serving = self.current[0].version if self.current else None
        if not self.policy.should_start(champion, serving, self.clock()):
            return False
        assert champion is not None
        try:
            self.switch_to(champion)
        except Exception as e:  # SwitchFailed, or a bug in one attempt: what serves goes on serving
            if not isinstance(e, SwitchFailed):
                log.error("serve_switch_crashed", version=champion.version, error=str(e), exc_info=e)
            self.policy.failed(champion.version, self.clock())
            self.metrics.swaps.labels("failed").inc()
            self.last_failure = str(e)
            log.error("serve_switch_failed", version=champion.version, serving=serving, error=str(e))
            self._write_status()
            return False
        self.policy.started()
        return True

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop serving: the front first (no new requests), then the version's container."""
        self.front.stop()
        if self.shadow is not None:
            _, backend, workdir = self.shadow
            self._remove(backend.container, workdir)
            self.shadow = None
        if self.current is not None:
            _, backend, workdir = self.current
            self._remove(backend.container, workdir)
            self.current = None
        self.metrics.up.set(0)
        self._write_status()

    # -- one switch --------------------------------------------------------------------------
    def _launch(self, served: Served, role: str = "") -> tuple[Backend, Path]:
        """The version started and checked in a work directory of its own (role "shadow-" for the
        challenger); whatever fails, nothing of it stays."""
        workdir = self.root / f"{role}v{served.version}-{secrets.token_hex(3)}"
        name = f"retraind-serve-{self.settings.model_name}-{role}v{served.version}-{workdir.name[-6:]}"
        try:
            return self._start(served, workdir, name), workdir
        except BaseException:  # failed its checks, a bug, or stopped meanwhile
            self._remove(name, workdir)
            raise

    def switch_to(self, served: Served) -> None:
        backend, workdir = self._launch(served)
        old = self.front.switch(backend)
        previous = self.current
        self.current = (served, backend, workdir)
        self.metrics.swaps.labels("switched").inc()
        self.last_failure = None
        log.info("serve_switched", version=served.version, previous=old.version if old else None,
                 address=self.address, image_id=served.image_id)  # fmt: skip
        self._write_status()
        if old is not None and previous is not None:
            drained = self.front.drained(old, self.settings.serve_drain_s)
            self._remove(old.container, previous[2])
            log.info("serve_drained", version=old.version, drained=drained)

    def _start(self, served: Served, workdir: Path, name: str) -> Backend:
        if not served.image_id:
            raise SwitchFailed(
                f"{served.label}: its run records no image (retraind.image.id); cannot serve it"
            )
        if self.containers.image_id(served.image_id) is None:
            raise SwitchFailed(
                f"{served.label}: image {served.image_id[:19]} of run {served.mlflow_run_id} is not in this "
                f"machine's podman store; rebuild it (retraind reproduce) or load it (podman load)"
            )
        workdir.mkdir(parents=True)
        sockets = socket_dir(workdir)
        try:
            model = self.source.download_model(served, workdir / "download")
        except RetraindError as e:
            raise SwitchFailed(f"{served.label}: its model could not be downloaded: {e}") from e
        package = Path(daemon.__file__).resolve().parent
        job = ContainerJob(
            name=name,
            image=served.image_id,
            argv=(
                "python",
                "-m",
                "daemon.container.serve_backend",
                "--model",
                "/model",
                "--socket",
                f"{SOCKET_DIR}/backend.sock",
                "--version",
                served.version,
                "--max-body-bytes",
                str(self.settings.serve_max_body_bytes),
                "--max-texts",
                str(self.settings.serve_max_texts),
            ),
            mounts=(
                Mount(model, "/model"),
                Mount(sockets, SOCKET_DIR, writable=True),
                Mount(package, f"{PACKAGE_MOUNT}/daemon"),
            ),
            labels={SERVE_LABEL: served.version, ADDRESS_LABEL: self.address.removeprefix("http://")},
            env={"PYTHONPATH": PACKAGE_MOUNT},
        )
        try:
            container = self.containers.start(job, workdir / "start.log")
        except InfrastructureError as e:
            raise SwitchFailed(f"{served.label}: {e}") from e
        backend = Backend(served.version, sockets / "backend.sock", container=name)
        self._wait_ready(backend, name, container)
        self._agrees_with_its_run(backend, served, workdir)
        return backend

    def _agrees_with_its_run(self, backend: Backend, served: Served, workdir: Path) -> None:
        """The new version predicts, on its run's test split, exactly the labels the run recorded
        (retraind.predictions.sha256): the image, the cleaner and the model are the ones it trained
        with. A run without its recorded predictions is served with a warning."""
        try:
            recorded = self.source.recorded_predictions(served, workdir / "recorded")
        except RetraindError as e:
            recorded, why = None, str(e)
        else:
            why = "the run has no test_predictions.jsonl"
        if recorded is None or not served.predictions_sha256:
            log.warning("serve_check_skipped", version=served.version, reason=why if recorded is None
                        else "the run has no retraind.predictions.sha256 tag")  # fmt: skip
            return
        # split at "\n" only: a text may hold U+2028 and other separators str.splitlines() splits at
        rows = [json.loads(line) for line in recorded.read_text(encoding="utf-8").split("\n") if line.strip()]
        texts = [str(r["text"]) for r in rows]
        predicted: list[str] = []
        chunk = self.settings.serve_max_texts
        for at in range(0, len(texts), chunk):
            status, answer = ask(backend.socket, "POST", "/invocations",
                                 {"inputs": texts[at : at + chunk]}, timeout=120)  # fmt: skip
            if status != 200:
                raise SwitchFailed(
                    f"v{served.version}: checking it on its test split failed: {status} {answer}"
                )
            predicted += [str(p) for p in answer["predictions"]]
        digest = predictions_sha256([(r["file"], r["line"], p) for r, p in zip(rows, predicted, strict=True)])
        if digest != served.predictions_sha256:
            differ = [i for i, (r, p) in enumerate(zip(rows, predicted, strict=True)) if r["predicted"] != p]
            raise SwitchFailed(
                f"v{served.version} predicts differently from its registered run: {len(differ)} of "
                f"{len(rows)} test texts differ; predictions sha256 {digest[:12]} != recorded "
                f"{served.predictions_sha256[:12]}"
            )
        log.info("serve_checked", version=served.version, texts=len(rows), predictions_sha256=digest)

    def _wait_ready(self, backend: Backend, name: str, container: str) -> None:
        """Ready: the socket answers /health for this version and a probe prediction is well formed."""
        deadline = self.clock() + self.settings.serve_start_timeout_s
        last = "no socket yet"
        while self.clock() < deadline and not self.stopping.is_set():
            if backend.socket.exists():
                try:
                    status, health = ask(backend.socket, "GET", "/health")
                    if status == 200 and health.get("model_version") == backend.version:
                        self._probe(backend)
                        return
                    last = f"/health answered {status} {health}"
                except (OSError, http.client.HTTPException, ValueError) as e:
                    last = f"{type(e).__name__}: {e}"
            elif not self.containers.running(name):
                last = "the model process exited"
                break
            time.sleep(0.1)
        output = self.containers.logs(name)
        raise SwitchFailed(
            f"v{backend.version} was not ready within {self.settings.serve_start_timeout_s:.0f} s ({last}); "
            f"container {container[:12]} said: {output[-1500:] or '(nothing)'}"
        )

    def _probe(self, backend: Backend) -> None:
        status, answer = ask(backend.socket, "POST", "/predict", {"texts": [HEALTH_PROBE]})
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if status != 200 or not predictions or "label" not in predictions[0]:
            raise SwitchFailed(f"v{backend.version}: the probe prediction failed: {status} {answer}")

    def _remove(self, name: str, workdir: Path) -> None:
        """The version's container, its work directory and its socket's directory."""
        link = workdir / "socket"
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
        try:
            self.containers.remove(name)
        except InfrastructureError as e:
            log.warning("serve_container_not_removed", container=name, error=str(e))
        shutil.rmtree(workdir, ignore_errors=True)

    def _write_status(self) -> None:
        status = ServeStatus(
            serving=self.current[0].version if self.current else None,
            address=self.address,
            pid=os.getpid(),
            last_failure=self.last_failure,
            failed_version=self.policy.failed_version,
            shadow=self.shadow[0].version if self.shadow else None,
        )
        write_status(self.settings.state_dir, status)
