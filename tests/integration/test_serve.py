"""`retraind serve` as typed: the champion from its own image in rootless podman, behind 127.0.0.1,
following the alias blue-green (issue 13). One champion is trained for the module; each test starts
its own `retraind serve` process."""

from __future__ import annotations

import csv
import http.client
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.core.records import IMAGE_TAG, PREDICTIONS_TAG
from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND, JsonLines, run_cli
from tests.integration.services import free_port

MODEL = "nlp-sentiment-classifier"
SWITCH_DEADLINE_S = 60.0  # the bound for following a move of the alias
READY_DEADLINE_S = 300.0  # the first version: container start and model load on a slow machine


@dataclass
class Lab:
    repo: Path
    data: Path
    state: Path
    home: Path

    @property
    def tracking(self) -> str:
        return f"sqlite:///{self.state / 'mlflow.db'}"

    def retraind(self, *argv: str, **env: str) -> tuple[int, list[dict[str, Any]], str]:
        flags = ("--repo", str(self.repo), "--data-dir", str(self.data), "--state-dir", str(self.state))
        return run_cli(*argv, *flags, env={"RETRAIND_CONFIG": str(self.home / "retraind.toml"), **env})


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, podman_ready: None) -> Lab:
    work = tmp_path_factory.mktemp("serve")
    data = work / "data"
    data.mkdir()
    shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
    (work / "retraind.toml").touch()
    lab = Lab(committed_copy(work / "repo"), data, work / "state", work)
    code, lines, output = lab.retraind("run", "--json")
    assert code == 0, output
    assert finished(lines)["model_version"] == "1" and finished(lines)["champion"] is True
    return lab


def another_model(seed: str) -> dict[str, str]:
    """A retraining the gate crowns: another seed (another split, other predictions: not the
    champion's model over again), and a tolerance that lets any F1 through."""
    return {"RETRAIND_SEED": seed, "RETRAIND_PROMOTION_TOLERANCE": "1"}


def finished(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in lines if e.get("event") == "run_finished")


class Serving(JsonLines):
    """A real `retraind serve` process: its JSON log lines, its address."""

    what = "retraind serve"

    def __init__(self, lab: Lab, **env: str) -> None:
        super().__init__()
        self.lab, self.port = lab, free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        base.update(RETRAIND_CONFIG=str(lab.home / "retraind.toml"), RETRAIND_SERVE_POLL_S="0.5", **env)
        argv = [RETRAIND, "serve", "--json", "--state-dir", str(lab.state), "--port", str(self.port)]
        self.follow(argv, base)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_serving(self, version: str, timeout: float) -> dict[str, Any]:
        return self.wait_log(
            lambda e: e.get("event") == "serve_switched" and e["version"] == version, timeout
        )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            return self.proc.wait(60)
        return self.proc.returncode


@pytest.fixture
def serving(lab: Lab) -> Iterator[Serving]:
    server = Serving(lab)
    yield server
    assert server.stop() == 0, server.lines[-5:]
    left = subprocess.run(
        ["podman", "ps", "-aq", f"--filter=label=io.retraind.serve.address=127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == "", "retraind serve left a container behind"


def request(url: str, method: str, path: str, body: bytes | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
    """One request: status, JSON answer, headers (on `conn` when given: a keep-alive connection)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        raw = answer.read()
        return answer.status, json.loads(raw) if raw else None, dict(answer.headers)
    finally:
        if own:
            conn.close()


def post(url: str, path: str, doc: Any) -> tuple[int, Any, dict[str, str]]:
    return request(url, "POST", path, json.dumps(doc).encode())


def sample_texts(n: int = 40) -> list[str]:
    with (ROOT / "data/sample.csv").open(encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows[:: max(1, len(rows) // n)]][:n]


def registered_tag(lab: Lab, version: str, tag: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(lab.tracking, registry_uri=lab.tracking)
    run_id = client.get_model_version(MODEL, version).run_id
    return str(client.get_run(run_id).data.tags[tag])


def registered_model(lab: Lab, dest: Path) -> Any:
    """The champion as MLflow itself loads it, in this process: the oracle the server must agree with.
    (Downloaded with a client of its own: set_tracking_uri would leak into later tests of the worker.)"""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    client = MlflowClient(lab.tracking, registry_uri=lab.tracking)
    run_id = client.get_model_version_by_alias(MODEL, "champion").run_id
    return mlflow.pyfunc.load_model(client.download_artifacts(run_id, "model", str(dest)))


def test_the_champion_answers_mlflow_s_three_shapes_and_predict_as_the_registered_model_does(
    lab: Lab, serving: Serving, tmp_path: Path
) -> None:
    switched = serving.wait_serving("1", READY_DEADLINE_S)
    checked = next(e for e in serving.lines if e.get("event") == "serve_checked")  # logged before the switch
    recorded = registered_tag(lab, "1", PREDICTIONS_TAG)
    assert (checked["version"], checked["predictions_sha256"]) == ("1", recorded)  # the run's test split,
    assert checked["texts"] > 500  # every text of it through the container, predicted as training did
    texts = sample_texts()
    import pandas as pd

    expected = [str(p) for p in registered_model(lab, tmp_path).predict(pd.DataFrame({"text": texts}))]
    shapes = {
        "dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]},
        "dataframe_records": [{"text": t} for t in texts],
        "inputs": {"text": texts},
    }
    for shape, value in shapes.items():
        status, answer, headers = post(serving.url, "/invocations", {shape: value})
        assert status == 200, (shape, answer)
        assert answer == {"predictions": expected}, shape
        assert headers["X-Model-Version"] == "1"
    status, answer, _ = post(serving.url, "/predict", {"texts": texts})
    assert status == 200 and answer["model_version"] == "1"
    assert [p["label"] for p in answer["predictions"]] == expected
    for p in answer["predictions"]:
        assert set(p["probabilities"]) == {"negative", "neutral", "positive"}
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["probabilities"][p["label"]] == max(p["probabilities"].values())
    status, health, _ = request(serving.url, "GET", "/health")
    assert (status, health["status"], health["model_version"]) == (200, "ready", "1")
    assert request(serving.url, "GET", "/version")[1]["model_version"] == "1"
    # its own image: the one the champion's run recorded; rootless, no network, read-only, no capabilities
    mine = f"--filter=label=io.retraind.serve.address=127.0.0.1:{serving.port}"
    ps = subprocess.run(["podman", "ps", "-q", mine], capture_output=True, text=True, check=True)
    (container,) = ps.stdout.split()
    inspect = subprocess.run(["podman", "inspect", container], capture_output=True, text=True, check=True)
    (info,) = json.loads(inspect.stdout)
    assert info["Image"] == switched["image_id"].removeprefix("sha256:")
    assert info["HostConfig"]["NetworkMode"] == "none" and info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["HostConfig"]["CapDrop"] and not info["HostConfig"]["CapAdd"]
    assert (
        metric(serving.url, 'retraind_serve_requests_total{code="200",endpoint="/invocations",version="1"}')
        == 3
    )
    assert (
        metric(serving.url, 'retraind_serve_request_duration_seconds_count{endpoint="/predict",version="1"}')
        == 1
    )


def metric(url: str, line_start: str) -> float:
    """The sum of the /metrics samples whose line starts so (one series, or all of a metric's)."""
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_start))


BAD_INPUTS = [
    ("/predict", b'{"texts": ["unfinished"', 400, "malformed JSON"),
    ("/predict", b'{"texts": []}', 400, "the list is empty"),
    ("/predict", b'{"texts": ["fine", 42]}', 400, "item 1 is int, not a string"),
    ("/predict", b'{"texts": ["caf\xe9"]}', 400, "not UTF-8"),
    ("/predict", b'{"text": ["typo in the key"]}', 400, '{"texts"'),
    ("/predict", json.dumps({"texts": ["x"] * 1001}).encode(), 413, "over the limit of 1000"),
    ("/predict", b'{"texts": ["' + b"a" * (1024 * 1024 + 10) + b'"]}', 413, "byte limit"),
    (
        "/invocations",
        json.dumps({"dataframe_split": {"columns": ["body"], "data": [["x"]]}}).encode(),
        400,
        "missing column 'text'",
    ),
    ("/invocations", json.dumps({"dataframe_records": [{"body": "x"}]}).encode(), 400, "has no 'text' field"),
    ("/invocations", json.dumps({"instances": ["x"]}).encode(), 400, "exactly one of"),
    ("/invocations", b"", 400, "empty body"),
]


def test_each_bad_input_gets_its_4xx_saying_what_is_wrong_and_serving_goes_on(
    lab: Lab, serving: Serving
) -> None:
    serving.wait_serving("1", READY_DEADLINE_S)
    for path, body, status, says in BAD_INPUTS:
        got, answer, _ = request(serving.url, "POST", path, body)
        assert (got, says in str(answer and answer.get("error"))) == (status, True), (path, body[:60], answer)
    assert post(serving.url, "/predict", {"texts": ["still here?"]})[0] == 200
    assert metric(serving.url, "retraind_serve_errors_total") == 0  # no 5xx among them
    assert (
        metric(serving.url, 'retraind_serve_requests_total{code="400",endpoint="/predict",version="1"}') == 5
    )


class Client:
    """Requests without a pause on one keep-alive connection, from a thread: every answer's status
    and version, with the time it came."""

    def __init__(self, url: str) -> None:
        self.url, self.answers, self.failures = url, [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=30)
        body = json.dumps({"texts": ["what a lovely morning", "I hate waiting"]}).encode()
        while not self.stopping.is_set():
            try:
                status, answer, _ = request(self.url, "POST", "/predict", body, conn)
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=30)
                continue
            if status != 200 or not (answer or {}).get("model_version"):
                self.failures.append(f"{status} {answer}")
            else:
                self.answers.append((time.monotonic(), answer["model_version"]))

    def wait_version(self, version: str, since: float, timeout: float) -> float:
        deadline = since + timeout
        while time.monotonic() < deadline:
            if any(t >= since and v == version for t, v in list(self.answers)):
                return next(t for t, v in list(self.answers) if t >= since and v == version) - since
            time.sleep(0.05)
        raise AssertionError(f"v{version} not served within {timeout} s; last: {self.answers[-3:]}")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)


def test_the_served_version_follows_gate_promote_and_rollback_with_no_failed_request(
    lab: Lab, serving: Serving
) -> None:
    serving.wait_serving("1", READY_DEADLINE_S)
    client = Client(serving.url)
    try:
        client.wait_version("1", time.monotonic() - 5, 30)
        # retrained with another seed (the same model over again would stay challenger); crowned
        code, lines, output = lab.retraind("run", "--json", "--force", **another_model("7"))
        assert code == 0 and finished(lines)["model_version"] == "2" and finished(lines)["champion"], output
        moved = time.monotonic()
        followed = [client.wait_version("2", moved, SWITCH_DEADLINE_S)]
        for argv, version in ((("promote", "1", "--reason", "serve test"), "1"),
                              (("rollback", "--reason", "serve test"), "2")):  # fmt: skip
            code, _, output = lab.retraind(*argv, "--json")
            assert code == 0, output
            moved = time.monotonic()
            followed.append(client.wait_version(version, moved, SWITCH_DEADLINE_S))
        time.sleep(0.5)  # let a few answers of the last version arrive before the count
    finally:
        client.stop()
    assert client.failures == []
    assert len(client.answers) > 100 and {v for _, v in client.answers} == {"1", "2"}
    versions = [v for _, v in client.answers]
    changes = [b for a, b in itertools.pairwise(versions) if a != b]
    assert changes == ["2", "1", "2"], "each move switched once, and never back and forth"
    assert all(s < SWITCH_DEADLINE_S for s in followed), followed
    deadline = time.monotonic() + SWITCH_DEADLINE_S  # the old container is stopped after the switch
    while len(drained := [e for e in serving.lines if e.get("event") == "serve_drained"]) < 3:
        assert time.monotonic() < deadline, serving.lines[-5:]
        time.sleep(0.1)
    assert [e["version"] for e in drained] == ["1", "2", "1"] and all(e["drained"] for e in drained)


def test_with_serve_shadow_the_challenger_scores_a_copy_of_each_request_off_the_response_path(
    lab: Lab,
) -> None:
    code, lines, output = lab.retraind("run", "--json", "--force", RETRAIND_PROMOTION_FLOOR="0.99")
    assert code == 0 and finished(lines)["champion"] is False, output  # below the floor: challenger
    challenger = finished(lines)["model_version"]
    models = lab.retraind("models", "--json")[1][0]["versions"]
    champion = next(v["version"] for v in models if "champion" in v["aliases"])
    assert next(v for v in models if v["version"] == challenger)["aliases"] == ["challenger"]
    serving = Serving(lab, RETRAIND_SERVE_SHADOW="true")
    try:
        serving.wait_serving(champion, READY_DEADLINE_S)
        serving.wait_log(
            lambda e: e.get("event") == "serve_shadow_started" and e["version"] == challenger, 120
        )
        texts = sample_texts(10)
        for _ in range(5):
            status, answer, _ = post(serving.url, "/predict", {"texts": texts})
            assert status == 200 and answer["model_version"] == champion  # the champion answers
            status, answer, _ = post(serving.url, "/invocations", {"inputs": texts})
            assert status == 200 and len(answer["predictions"]) == len(texts)
        scored = f'retraind_serve_shadow_texts_total{{outcome="agreed",version="{challenger}"}}'
        deadline = time.monotonic() + 30  # the copies are scored after the answers went out
        while metric(serving.url, scored) + metric(serving.url, scored.replace("agreed", "disagreed")) < 100:
            assert time.monotonic() < deadline, serving.lines[-5:]
            time.sleep(0.1)
        ratio = metric(serving.url, f'retraind_serve_shadow_agreement_ratio{{version="{challenger}"}}')
        assert 0.0 <= ratio <= 1.0 and ratio == metric(serving.url, scored) / 100
        assert metric(serving.url, "retraind_serve_shadow_errors_total") == 0
        count = "retraind_serve_shadow_request_duration_seconds_count"
        assert metric(serving.url, f'{count}{{endpoint="/predict",version="{challenger}"}}') == 5
        shown = lab.retraind("status", "--json")[1][0]["serve"]
        assert (shown["serving"], shown["shadow"]) == (champion, challenger)
    finally:
        assert serving.stop() == 0, serving.lines[-5:]
    assert any(e.get("event") == "serve_shadow_started" for e in serving.lines)


def test_a_champion_whose_image_is_missing_is_not_served_and_the_old_one_keeps_answering(
    lab: Lab, serving: Serving
) -> None:
    from mlflow.tracking import MlflowClient

    models = lab.retraind("models", "--json")[1][0]
    if len(models["versions"]) < 2:  # run alone: a second version to promote
        assert lab.retraind("run", "--json", "--force")[0] == 0
        models = lab.retraind("models", "--json")[1][0]
    serving_now = next(v["version"] for v in models["versions"] if "champion" in v["aliases"])
    other = next(v for v in models["versions"] if v["version"] != serving_now)
    serving.wait_serving(serving_now, READY_DEADLINE_S)
    client = MlflowClient(lab.tracking, registry_uri=lab.tracking)
    client.set_tag(other["mlflow_run_id"], IMAGE_TAG, "sha256:" + "0" * 64)  # an image this machine lacks
    since = len(serving.lines)
    code, _, output = lab.retraind("promote", other["version"], "--reason", "image gone", "--json")
    assert code == 0, output
    failed = serving.wait_log(lambda e: e.get("event") == "serve_switch_failed", SWITCH_DEADLINE_S, since)
    assert failed["version"] == other["version"] and "not in this machine's podman store" in failed["error"]
    status, answer, _ = post(serving.url, "/predict", {"texts": ["still the old one?"]})
    assert status == 200 and answer["model_version"] == serving_now
    assert metric(serving.url, 'retraind_serve_swaps_total{outcome="failed"}') == 1
    assert metric(serving.url, f'retraind_serve_version_info{{version="{serving_now}"}}') == 1
    code, lines, output = lab.retraind("status", "--json")
    shown = lines[0]["serve"]
    assert shown["up"] is True and shown["serving"] == serving_now
    assert shown["failed_version"] == other["version"] and "podman store" in shown["last_failure"]


def test_a_champion_whose_model_fails_to_load_is_not_served_and_its_error_is_shown(
    lab: Lab, serving: Serving
) -> None:
    code, lines, output = lab.retraind("run", "--json", "--force", **another_model("8"))  # a fresh champion
    assert code == 0, output
    newest = finished(lines)["model_version"]
    serving.wait_serving(newest, READY_DEADLINE_S)
    models = lab.retraind("models", "--json")[1][0]
    victim = next(v for v in models["versions"] if v["version"] != newest and not v["aliases"])
    (pickle_file,) = (lab.state / "artifacts").glob(f"**/{victim['mlflow_run_id']}/artifacts/model/model.pkl")
    pickle_file.write_bytes(b"not a pickle")  # the artifact store's copy: what serve downloads
    from mlflow.tracking import MlflowClient

    client = MlflowClient(lab.tracking, registry_uri=lab.tracking)  # every version here has one image:
    client.set_tag(victim["mlflow_run_id"], IMAGE_TAG, finished(lines)["image_id"])  # (the test above hid it)
    since = len(serving.lines)
    assert lab.retraind("promote", victim["version"], "--reason", "broken model", "--json")[0] == 0
    failed = serving.wait_log(
        lambda e: e.get("event") == "serve_switch_failed" and e["version"] == victim["version"], 120, since
    )
    assert "the model process exited" in failed["error"] and "UnpicklingError" in failed["error"]
    status, answer, _ = post(serving.url, "/predict", {"texts": ["who answers?"]})
    assert status == 200 and answer["model_version"] == newest


def test_a_champion_that_predicts_otherwise_than_its_registered_run_is_not_served(
    lab: Lab, serving: Serving
) -> None:
    from mlflow.tracking import MlflowClient

    code, lines, output = lab.retraind("run", "--json", "--force", **another_model("9"))
    assert code == 0, output
    newest = finished(lines)["model_version"]
    checked = serving.wait_log(lambda e: e.get("event") == "serve_checked" and e["version"] == newest, 120)
    assert checked["predictions_sha256"] == registered_tag(lab, newest, PREDICTIONS_TAG)
    victim = next(
        v for v in lab.retraind("models", "--json")[1][0]["versions"] if v["version"] == str(int(newest) - 1)
    )
    client = MlflowClient(lab.tracking, registry_uri=lab.tracking)
    client.set_tag(victim["mlflow_run_id"], PREDICTIONS_TAG, "0" * 64)  # as if it had predicted otherwise
    since = len(serving.lines)
    assert lab.retraind("promote", victim["version"], "--reason", "drifted", "--json")[0] == 0
    failed = serving.wait_log(
        lambda e: e.get("event") == "serve_switch_failed" and e["version"] == victim["version"], 120, since
    )
    assert "predicts differently from its registered run" in failed["error"]
    assert post(serving.url, "/predict", {"texts": ["who answers?"]})[1]["model_version"] == newest
