"""The model process of `retraind serve`: one model version, inside the image its run was built
with, answering HTTP on a Unix socket in a bind-mounted directory (the container has no network).

    python -m daemon.container.serve_backend --model /model --socket /run/serve/v3.sock --version 3

It loads the model (daemon/core/modelfile.py: the pickle with the cleaner it ships), makes one
warm-up prediction, and only then binds the socket, so a socket that answers is a model that is
ready. The host's front (daemon/adapters/serve_front.py) forwards to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from daemon.core.modelfile import load_model
from daemon.core.scoring import (
    COLUMN,
    MAX_BODY_BYTES,
    MAX_TEXTS,
    BadRequest,
    Limits,
    invocation_texts,
    predict_texts,
    predictions,
)

WARM_UP = ["retraind warm-up: is this model ready?"]


class Scorer:
    """The model and what it answers, independent of the HTTP server."""

    def __init__(self, model_dir: Path, version: str) -> None:
        import pandas as pd

        self.pd, self.version = pd, version
        self.model = load_model(model_dir)
        self.classes = [str(c) for c in self.model.classes_]
        started = time.monotonic()
        self.predict(WARM_UP)
        self.warm_up_s = time.monotonic() - started

    def frame(self, texts: list[str]) -> Any:
        return self.pd.DataFrame({COLUMN: texts})

    def predict(self, texts: list[str]) -> dict[str, Any]:
        frame = self.frame(texts)
        probabilities = self.model.predict_proba(frame)
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
        return predictions(labels, self.classes, probabilities.tolist(), self.version)

    def invocations(self, texts: list[str]) -> dict[str, Any]:
        return {"predictions": [str(p) for p in self.model.predict(self.frame(texts))]}


class Batcher:
    """Requests that arrive while the model is busy are answered by one prediction: the cleaner and
    TF-IDF cost little per extra text (32 texts take 1.4x the time of one), so under load each
    request costs a fraction of a prediction of its own. Nothing waits for a batch to fill: a
    batch is what queued up during the last one (the event loop reads every request that arrived
    before the next prediction starts)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.pending: dict[str, list[tuple[list[str], asyncio.Future[Any]]]] = {
            "predict": [],
            "invocations": [],
        }
        self.scheduled = False

    async def submit(self, kind: str, texts: list[str]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending[kind].append((texts, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        self.scheduled = False
        for kind, waiting in self.pending.items():
            if not waiting:
                continue
            self.pending[kind] = []
            texts = [t for batch, _ in waiting for t in batch]
            try:
                answer = self.scorer.predict(texts) if kind == "predict" else self.scorer.invocations(texts)
            except Exception as e:  # a model error fails the requests of this batch, not the process
                for _, future in waiting:
                    future.set_exception(e)
                continue
            at = 0
            for batch, future in waiting:
                part = {**answer, "predictions": answer["predictions"][at : at + len(batch)]}
                at += len(batch)
                future.set_result(part)


def build_app(scorer: Scorer, limits: Limits) -> Any:
    from aiohttp import web

    batcher = Batcher(scorer)

    headers = {"X-Model-Version": scorer.version}

    def answer(doc: Any, status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(doc).encode(), status=status, headers=headers,
                            content_type="application/json")  # fmt: skip

    async def scored(request: web.Request, parse: Any, kind: str) -> web.Response:
        if request.content_length is not None and request.content_length > limits.max_body_bytes:
            return answer({"error": f"body over the {limits.max_body_bytes}-byte limit"}, 413)
        try:
            texts = parse(await request.read(), limits)
        except BadRequest as e:
            return answer({"error": str(e)}, e.status)
        except web.HTTPRequestEntityTooLarge:
            return answer({"error": f"body over the {limits.max_body_bytes}-byte limit"}, 413)
        try:
            return answer(await batcher.submit(kind, texts))
        except Exception as e:  # the model failed on this input: say so, keep serving
            return answer({"error": f"the model failed: {type(e).__name__}: {e}"}, 500)

    async def predict(request: web.Request) -> web.Response:
        return await scored(request, predict_texts, "predict")

    async def invocations(request: web.Request) -> web.Response:
        return await scored(request, invocation_texts, "invocations")

    async def health(request: web.Request) -> web.Response:
        return answer({"status": "ready", "model_version": scorer.version, "warm_up_s": scorer.warm_up_s})

    async def version(request: web.Request) -> web.Response:
        return answer({"model_version": scorer.version, "classes": scorer.classes})

    app = web.Application(client_max_size=limits.max_body_bytes + 1)
    app.add_routes([
        web.post("/predict", predict), web.post("/invocations", invocations),
        web.get("/health", health), web.get("/ping", health), web.get("/version", version),
    ])  # fmt: skip
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="the MLflow model directory")
    p.add_argument("--socket", type=Path, required=True, help="the Unix socket to answer on")
    p.add_argument("--version", required=True, help="the registered model version it is")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    p.add_argument("--max-texts", type=int, default=MAX_TEXTS)
    args = p.parse_args(argv)
    from aiohttp import web

    scorer = Scorer(args.model, args.version)
    app = build_app(scorer, Limits(args.max_body_bytes, args.max_texts))
    args.socket.unlink(missing_ok=True)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    loop.run_until_complete(runner.setup())
    site = web.UnixSite(runner, str(args.socket))
    loop.run_until_complete(site.start())
    os.chmod(args.socket, 0o660)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(json.dumps({"event": "backend_ready", "version": args.version, "socket": str(args.socket),
                      "warm_up_s": round(scorer.warm_up_s, 4)}), flush=True)  # fmt: skip
    loop.run_until_complete(stop.wait())
    loop.run_until_complete(runner.cleanup())  # finishes the requests in flight, then closes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
