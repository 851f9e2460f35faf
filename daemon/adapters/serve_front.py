"""The front of `retraind serve`: HTTP on 127.0.0.1, forwarded to the model process of the version
being served, over its Unix socket (the model's container has no network).

Switching versions is switching sockets: `switch` points new requests at the new backend at once;
requests already forwarded to the old one finish there (`drained` waits for them), so a swap drops
nothing. `/metrics` is the front's own: requests, latency and errors by version and endpoint.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from daemon.core.scoring import MAX_BODY_BYTES

disable_created_metrics()  # type: ignore[no-untyped-call]  # as daemon/engine/metrics.py: no *_created
ENDPOINTS = ("/predict", "/invocations", "/health", "/ping", "/version")
SCORING = ("/predict", "/invocations")  # what the shadow gets a copy of
SHADOW_IN_FLIGHT = 32  # copies the shadow may be behind before more are dropped
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
FORWARDED_HEADERS = ("Content-Type", "Accept")


class ServeMetrics:
    """The serving series, on an injected registry (labels bounded: unknown paths are "other")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("retraind_serve_requests", "Requests answered, by model version, endpoint "
                                "and HTTP status.", ["version", "endpoint", "code"], registry=r)  # fmt: skip
        self.latency = Histogram("retraind_serve_request_duration_seconds", "Time to answer a request, "
                                 "forwarding included.", ["version", "endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=r)  # fmt: skip
        self.errors = Counter("retraind_serve_errors", "Requests that got a 5xx: the model process failed "
                              "or could not be reached.", ["version", "endpoint"], registry=r)  # fmt: skip
        self.served = Gauge("retraind_serve_version_info", "1 for the model version serving now.",
                            ["version"], registry=r)  # fmt: skip
        self.up = Gauge("retraind_serve_up", "1 while a model version is serving.", registry=r)
        self.swaps = Counter("retraind_serve_swaps", "Attempts to serve another version, by outcome "
                             "(switched, failed).", ["outcome"], registry=r)  # fmt: skip
        for outcome in ("switched", "failed"):
            self.swaps.labels(outcome)
        # The shadow (serve_shadow): the challenger, given a copy of each scoring request
        self.shadow_texts = Counter("retraind_serve_shadow_texts", "Texts the shadow version scored, by "
                                    "whether its label agreed with the served version's.",
                                    ["version", "outcome"], registry=r)  # fmt: skip
        self.shadow_agreement = Gauge("retraind_serve_shadow_agreement_ratio", "Share of texts on which "
                                      "the shadow version agreed with the served one, since it started.",
                                      ["version"], registry=r)  # fmt: skip
        self.shadow_latency = Histogram("retraind_serve_shadow_request_duration_seconds", "Time the shadow "
                                        "version took to answer its copy.", ["version", "endpoint"],
                                        buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.shadow_errors = Counter("retraind_serve_shadow_errors", "Copies the shadow version failed to "
                                     "answer.", ["version"], registry=r)  # fmt: skip
        self.shadow_dropped = Counter("retraind_serve_shadow_dropped", "Copies not sent: the shadow version "
                                      "was SHADOW_IN_FLIGHT copies behind.", registry=r)  # fmt: skip
        self.shadowing_version = Gauge("retraind_serve_shadow_version_info", "1 for the version in shadow.",
                                       ["version"], registry=r)  # fmt: skip

    def serving(self, version: str, previous: str | None = None) -> None:
        """`version` serves from now on: its series start at 0 (rate() misses the first increment of
        a series born with it), and the served-version gauge moves from `previous`."""
        for endpoint in ENDPOINTS:
            self.requests.labels(version, endpoint, "200")
            self.latency.labels(version, endpoint)
            self.errors.labels(version, endpoint)
        if previous is not None and previous != version:
            self.served.remove(previous)
        self.served.labels(version).set(1)
        self.up.set(1)

    def shadowing(self, version: str | None, previous: str | None = None) -> None:
        """`version` is in shadow from now on (None: nothing is); its series start at 0."""
        if previous is not None and previous != version:
            self.shadowing_version.remove(previous)
        if version is None:
            return
        for outcome in ("agreed", "disagreed"):
            self.shadow_texts.labels(version, outcome)
        for endpoint in SCORING:
            self.shadow_latency.labels(version, endpoint)
        self.shadow_errors.labels(version)
        self.shadowing_version.labels(version).set(1)


@dataclass
class Backend:
    """One model version's process, as the front reaches it."""

    version: str
    socket: Path
    container: str = ""
    in_flight: int = 0
    session: ClientSession | None = field(default=None, repr=False)
    agreed: int = 0  # in shadow: texts scored as the served version scored them,
    scored: int = 0  # ... of these


def endpoint_of(path: str) -> str:
    return path if path in ENDPOINTS else "other"


class Front:
    """The listener and what it forwards to. Its event loop runs in a thread of its own (`start`);
    `switch` and `drained` are called from other threads."""

    def __init__(
        self,
        metrics: ServeMetrics,
        registry: CollectorRegistry,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.metrics, self.registry, self.max_body_bytes, self.clock = (
            metrics,
            registry,
            max_body_bytes,
            clock,
        )
        self.current: Backend | None = None
        self.shadow: Backend | None = None
        self._mirrors: set[asyncio.Task[None]] = set()
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle (any thread) --------------------------------------------------------------
    def start(self, host: str, port: int) -> None:
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._listen(host, port))
            except BaseException as e:  # the port is taken: say so in the caller's thread
                failed.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=serve, name="serve-front", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def switch(self, backend: Backend) -> Backend | None:
        """Serve `backend` from the next request on; returns the one it replaces (still finishing
        what it was given)."""
        return asyncio.run_coroutine_threadsafe(self._switch(backend), self.loop).result(30)

    def set_shadow(self, backend: Backend | None) -> Backend | None:
        """Give `backend` (None: nobody) a copy of each scoring request from now on; returns the one
        it replaces."""
        return asyncio.run_coroutine_threadsafe(self._set_shadow(backend), self.loop).result(30)

    def drained(self, backend: Backend, timeout_s: float) -> bool:
        """Wait until nothing forwarded to `backend` is in flight, then close its connections."""
        deadline = time.monotonic() + timeout_s
        while backend.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        done = backend.in_flight == 0
        if backend.session is not None:
            asyncio.run_coroutine_threadsafe(backend.session.close(), self.loop).result(30)
        return done

    # -- the loop's side ---------------------------------------------------------------------
    async def _switch(self, backend: Backend) -> Backend | None:
        backend.session = _session(backend)
        old, self.current = self.current, backend
        self.metrics.serving(backend.version, old.version if old else None)
        return old

    async def _set_shadow(self, backend: Backend | None) -> Backend | None:
        if backend is not None:
            backend.session = _session(backend)
        old, self.shadow = self.shadow, backend
        self.metrics.shadowing(backend.version if backend else None, old.version if old else None)
        return old

    async def _listen(self, host: str, port: int) -> None:
        app = web.Application(client_max_size=self.max_body_bytes + 1)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        started = self.clock()
        endpoint = endpoint_of(request.path)
        backend = self.current
        if backend is None or backend.session is None:
            return self._answered("none", endpoint, started, _error(503, "no model version is serving yet"))
        backend.in_flight += 1
        try:
            too_large = request.content_length is not None and request.content_length > self.max_body_bytes
            try:
                body = b"" if too_large else await request.read()
            except web.HTTPRequestEntityTooLarge:
                too_large = True
            if too_large:
                response = _error(413, f"body over the {self.max_body_bytes}-byte limit")
                return self._answered(backend.version, endpoint, started, response)
            headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
            try:
                async with backend.session.request(
                    request.method, f"http://model{request.path_qs}", data=body, headers=headers
                ) as answer:
                    content = await answer.read()
                    if answer.status == 200 and endpoint in SCORING and self.shadow is not None:
                        self._mirror(self.shadow, request, endpoint, body, headers, content)
                    response = web.Response(
                        body=content,
                        status=answer.status,
                        headers={
                            "Content-Type": answer.headers.get("Content-Type", "application/json"),
                            "X-Model-Version": answer.headers.get("X-Model-Version", backend.version),
                        },
                    )
            except (TimeoutError, ClientError, OSError) as e:
                response = _error(503, f"model version {backend.version} did not answer: {type(e).__name__}")
            return self._answered(backend.version, endpoint, started, response)
        finally:
            backend.in_flight -= 1

    def _mirror(self, shadow: Backend, request: web.Request, endpoint: str, body: bytes,
                headers: dict[str, str], served: bytes) -> None:  # fmt: skip
        """A copy of the request to the shadow, off the response path: a task of its own."""
        if shadow.in_flight >= SHADOW_IN_FLIGHT:
            self.metrics.shadow_dropped.inc()
            return
        shadow.in_flight += 1
        task = self.loop.create_task(self._shadowed(shadow, request.method, request.path_qs, endpoint, body,
                                                    headers, served))  # fmt: skip
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _shadowed(self, shadow: Backend, method: str, path: str, endpoint: str, body: bytes,
                        headers: dict[str, str], served: bytes) -> None:  # fmt: skip
        started = self.clock()
        try:
            assert shadow.session is not None
            async with shadow.session.request(method, f"http://model{path}", data=body, headers=headers) as a:
                content, status = await a.read(), a.status
        except (TimeoutError, ClientError, OSError, RuntimeError):  # RuntimeError: session closed
            self.metrics.shadow_errors.labels(shadow.version).inc()
            return
        finally:
            shadow.in_flight -= 1
        self.metrics.shadow_latency.labels(shadow.version, endpoint).observe(self.clock() - started)
        if status != 200:
            self.metrics.shadow_errors.labels(shadow.version).inc()
            return
        try:
            ours, theirs = _labels(served, endpoint), _labels(content, endpoint)
        except (ValueError, KeyError, TypeError):  # an answer of another shape: not comparable
            self.metrics.shadow_errors.labels(shadow.version).inc()
            return
        agreed = sum(a == b for a, b in zip(ours, theirs, strict=False))
        self.metrics.shadow_texts.labels(shadow.version, "agreed").inc(agreed)
        self.metrics.shadow_texts.labels(shadow.version, "disagreed").inc(len(ours) - agreed)
        shadow.agreed, shadow.scored = shadow.agreed + agreed, shadow.scored + len(ours)
        if shadow.scored:
            self.metrics.shadow_agreement.labels(shadow.version).set(shadow.agreed / shadow.scored)

    def _answered(self, version: str, endpoint: str, started: float, response: web.Response) -> web.Response:
        self.metrics.requests.labels(version, endpoint, str(response.status)).inc()
        self.metrics.latency.labels(version, endpoint).observe(self.clock() - started)
        if response.status >= 500:
            self.metrics.errors.labels(version, endpoint).inc()
        return response


def _session(backend: Backend) -> ClientSession:
    return ClientSession(
        connector=UnixConnector(path=str(backend.socket), limit=0),
        timeout=ClientTimeout(total=60),
        skip_auto_headers=("User-Agent",),
    )


def _labels(content: bytes, endpoint: str) -> list[str]:
    """The labels of a scoring answer: /predict's per-text label, /invocations' predictions."""
    predictions = json.loads(content)["predictions"]
    return [str(p["label"]) if endpoint == "/predict" else str(p) for p in predictions]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def front_for(metrics_registry: CollectorRegistry | None = None, **kwargs: Any) -> Front:
    registry = metrics_registry or CollectorRegistry()
    return Front(ServeMetrics(registry), registry, **kwargs)
