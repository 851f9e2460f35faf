"""The measurement behind `retraind serve`'s design: which HTTP server for the model process, and
whether a front on 127.0.0.1 forwarding to a Unix socket costs much against serving TCP directly.

The same model (a champion, as bench/serve.py makes or finds one) and the same batching
(daemon/container/serve_backend.py's Scorer and Batcher) behind four set-ups, each a process of its
own on the host (a container adds namespaces, not CPU work, so the servers are compared bare):

  aiohttp TCP            the model process answering 127.0.0.1 itself (what --network=host allows)
  uvicorn+starlette TCP  the same, with the other well-kept ASGI stack the image carries
  aiohttp UDS + front    what retraind serve runs: the model on a Unix socket (--network=none), the
                         aiohttp front on 127.0.0.1 forwarding to it (daemon/adapters/serve_front.py)
  uvicorn UDS + front    uvicorn+starlette on the socket behind the same front

Each at concurrency 1, 8 and 32 with bench/serve.py's closed-loop client. Prints req/s, p50, p99.
Usage: .venv/bin/python bench/serve_options.py [--state-dir DIR] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_serve() -> Any:
    spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "bench/serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One set-up, run as `python bench/serve_options.py --child KIND MODEL ADDRESS`.
def child(kind: str, model: Path, address: str) -> None:
    from daemon.container.serve_backend import Batcher, Scorer, build_app
    from daemon.core.scoring import BadRequest, Limits, invocation_texts

    scorer = Scorer(model, "1")
    if kind == "aiohttp":
        from aiohttp import web

        app = build_app(scorer, Limits())
        if address.startswith("/"):
            web.run_app(app, path=address, access_log=None, print=None)
        else:
            web.run_app(app, host="127.0.0.1", port=int(address), access_log=None, print=None)
        return
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    batcher = Batcher(scorer)

    async def invocations(request: Request) -> Response:
        try:
            texts = invocation_texts(await request.body(), Limits())
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        return Response(json.dumps(await batcher.submit("invocations", texts)), media_type="application/json")

    app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])
    if address.startswith("/"):
        uvicorn.run(app, uds=address, log_level="warning", access_log=False)
    else:
        uvicorn.run(app, host="127.0.0.1", port=int(address), log_level="warning", access_log=False)


def front(socket_path: str, port: int) -> None:
    """The front of retraind serve, forwarding 127.0.0.1:port to the socket, until SIGTERM."""
    from daemon.adapters.serve_front import Backend, front_for

    f = front_for()
    f.start("127.0.0.1", port)
    f.switch(Backend("1", Path(socket_path)))
    signal.sigwait({signal.SIGTERM})
    f.stop()


def wait_socket(path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"{path} never appeared")
        time.sleep(0.05)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), sys.argv[4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--front":
        front(sys.argv[2], int(sys.argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", default="1,8,32")
    args = p.parse_args()
    serve = _bench_serve()
    work = Path(tempfile.mkdtemp(prefix="retraind-bench-options-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        state = args.state_dir or serve.train_champion(work)
        from daemon.adapters.registry import MlflowRegistry

        registry = MlflowRegistry(f"sqlite:///{state / 'mlflow.db'}")
        champion = registry.champion("nlp-sentiment-classifier")
        assert champion is not None, f"no champion in {state}"
        model = registry.download_model(champion, work / "model")
        me = [sys.executable, str(Path(__file__).resolve())]
        levels = [int(c) for c in args.concurrency.split(",")]

        def start(argv: list[str]) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            procs.append(proc)
            return proc

        def stop_all() -> None:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(30)
            procs.clear()

        print(f"{'set-up':<24}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for name, kind, via_front in (
            ("aiohttp TCP", "aiohttp", False),
            ("uvicorn+starlette TCP", "uvicorn", False),
            ("aiohttp UDS + front", "aiohttp", True),
            ("uvicorn UDS + front", "uvicorn", True),
        ):
            port = serve.free_port()
            if via_front:
                sock = work / f"{kind}.sock"
                start([*me, "--child", kind, str(model), str(sock)])
                wait_socket(sock)
                start([*me, "--front", str(sock), str(port)])
            else:
                start([*me, "--child", kind, str(model), str(port)])
            url = f"http://127.0.0.1:{port}"
            serve.wait_ready(url, procs[-1], time.monotonic(), 120, name)
            for c in levels:
                r = asyncio.run(serve.load(url, c, args.seconds))
                failed = f"  failures {r['failures']}" if r["failures"] else ""
                print(
                    f"{name:<24}{c:>4}{r['rps']:>10.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{failed}",
                    flush=True,
                )
            stop_all()
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
