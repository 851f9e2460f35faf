"""Several daemons, one registry: the promotion lock on a real PostgreSQL serialises gates and the
version creation, so two daemons training the same model make one champion move, one version per
pipeline run, and the second version challenger with the reason.

A gate's critical section lasts a fraction of a second, so a race left to chance would rarely
happen. These tests make it certain: the test holds the model's advisory lock on a connection of
its own, waits until PostgreSQL shows both contenders waiting for it (pg_locks), then lets go.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters import registry as registry_module
from daemon.adapters.promotionlock import advisory_key
from daemon.adapters.registry import CHALLENGER, CHAMPION, REASON_TAG, MlflowRegistry
from daemon.adapters.tracking import MlflowTracker
from daemon.core.errors import TrackingError
from daemon.core.promotion import DATA_SHA256_TAG, F1_METRIC, GatePolicy
from daemon.core.records import PREDICTIONS_TAG, RUN_ID_TAG, RunRecord
from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RUN_DEADLINE_S, Daemon
from tests.integration.services import MlflowServer, Postgres

PREDICTIONS, DATA = "ab12" * 16, "cd34" * 16  # one model's identity: the same in both contenders


def wait_until(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


class HeldLock:
    """The model's advisory lock, held by the test on a connection of its own."""

    def __init__(self, postgres: Postgres, db: str, model: str) -> None:
        self.key = advisory_key(model)
        self.conn = postgres.connect(db)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (self.key,))

    def waiting(self) -> int:
        """Sessions waiting for it (pg_locks splits a bigint key into classid and objid)."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objsubid = 1 AND classid::bigint = %s AND objid::bigint = %s",
                ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF),
            )
            return int(cur.fetchone()[0])

    def release(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            assert cur.fetchone()[0] is True

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def held_lock(postgres: Postgres, db: str, model: str) -> Iterator[HeldLock]:
    lock = HeldLock(postgres, db, model)
    try:
        yield lock
    finally:
        lock.close()


def in_threads(*calls: Callable[[], Any]) -> tuple[list[threading.Thread], list[Any]]:
    """Start each call in a thread; results[i] is its return value or the exception it raised."""
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            results[i] = call()
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, results


def joined(threads: list[threading.Thread], results: list[Any]) -> list[Any]:
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def two_versions(uri: str, tmp_path: Path, model: str, f1: float = 0.74) -> list[str]:
    """Two versions of one model with the same predictions, data and F1 (as two daemons train)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.create_experiment(model, artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model(model)
    versions = []
    for n in (1, 2):
        tags = {RUN_ID_TAG: f"{model}-run-{n}", PREDICTIONS_TAG: PREDICTIONS, DATA_SHA256_TAG: DATA}
        run = client.create_run(experiment, tags=tags)
        client.log_metric(run.info.run_id, F1_METRIC, f1)
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        versions.append(str(mv.version))
    return versions


@pytest.fixture
def model() -> str:
    return f"race-{uuid.uuid4().hex[:8]}"  # the session's MLflow database is shared by other tests


@pytest.fixture(params=["server", "direct"])
def registry_uris(
    request: pytest.FixtureRequest, mlflow_server: MlflowServer, postgres: Postgres
) -> tuple[str, str, str]:
    """(tracking URI, promotion_lock_uri, the lock's database): an MLflow server with its backend
    as the lock, or MLflow straight on PostgreSQL, the tracking URI being the lock itself."""
    if request.param == "server":
        return mlflow_server.url, postgres.sqlalchemy_uri("mlflow"), "mlflow"
    postgres.create_database("gates")
    return postgres.sqlalchemy_uri("gates"), "", "gates"


def test_the_lock_serialises_two_gates_one_champion_move_and_the_loser_measured_against_the_winner(
    registry_uris: tuple[str, str, str], postgres: Postgres, model: str, tmp_path: Path
) -> None:
    uri, lock_uri, db = registry_uris
    first, second = two_versions(uri, tmp_path, model)
    daemons = [MlflowRegistry(uri, lock_uri=lock_uri), MlflowRegistry(uri, lock_uri=lock_uri)]
    gates = [
        lambda: daemons[0].apply_gate(model, first, 0.74, "daemon-a", GatePolicy()),
        lambda: daemons[1].apply_gate(model, second, 0.74, "daemon-b", GatePolicy()),
    ]
    with held_lock(postgres, db, model) as lock:
        threads, results = in_threads(*gates)
        wait_until("both gates waiting for the lock", lambda: lock.waiting() == 2, 60)
        lock.release()
        decisions = joined(threads, results)

    assert sorted(d.promote for d in decisions) == [False, True]
    winner, loser = (first, second) if decisions[0].promote else (second, first)
    lost = decisions[1] if decisions[0].promote else decisions[0]
    registry = MlflowRegistry(uri)
    history = registry.history(model)
    assert [(h.version, h.previous, h.action) for h in history] == [(winner, None, "gate")]  # one move
    reason = (
        f"the same model as champion v{winner}: identical predictions (sha256 {PREDICTIONS[:12]})"
        f" on the same data (sha256 {DATA[:12]})"
    )
    assert (lost.reason, lost.against) == (reason, winner)  # measured against the new champion
    rows = {r.version: r for r in registry.versions(model)}
    assert rows[winner].aliases == (CHAMPION,) and rows[loser].aliases == (CHALLENGER,)
    assert rows[loser].promotion_reason == reason and rows[winner].promotion_reason == "no champion yet"


def test_without_the_lock_both_gates_read_no_champion_and_both_crown(
    mlflow_server: MlflowServer, model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the lock closes, shown: with no lock (an http server without promotion_lock_uri),
    two gates that both read the champion before either moves it both crown their version. (The
    moves themselves are taken one after the other here: two concurrent alias writes can also fail
    in MLflow's server, a UniqueViolation on registered_model_alias_pk.)"""
    first, second = two_versions(mlflow_server.url, tmp_path, model)
    both_decided, one_done = threading.Barrier(2, timeout=60), threading.Event()
    decide = registry_module.decide

    def decide_then_wait(*args: Any, **kwargs: Any) -> Any:
        decision = decide(*args, **kwargs)
        if both_decided.wait() == 0:  # each has read the champion (none) before either moved it
            assert one_done.wait(60)  # then one moves it, and the other after it
        return decision

    def gate(registry: MlflowRegistry, version: str) -> Any:
        decision = registry.apply_gate(model, version, 0.74, "gate", GatePolicy())
        one_done.set()
        return decision

    monkeypatch.setattr(registry_module, "decide", decide_then_wait)
    registries = [MlflowRegistry(mlflow_server.url), MlflowRegistry(mlflow_server.url)]
    assert registries[0].lock.shown == "none"
    threads, results = in_threads(lambda: gate(registries[0], first), lambda: gate(registries[1], second))
    assert [d.reason for d in joined(threads, results)] == ["no champion yet"] * 2
    assert len(MlflowRegistry(mlflow_server.url).history(model)) == 2  # two champion moves


def delivery(tmp_path: Path, key: str) -> RunRecord:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    return RunRecord(
        "deliveries",
        key,
        "FINISHED",
        {"seed": "42"},
        {F1_METRIC: 0.74},
        {RUN_ID_TAG: key, PREDICTIONS_TAG: PREDICTIONS, DATA_SHA256_TAG: DATA},
        {},
        model_dir,
    )


def runs_of(uri: str, key: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("deliveries")
    return list(client.search_runs([experiment.experiment_id], f"tags.`{RUN_ID_TAG}` = '{key}'"))


def versions_of(uri: str, model: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    return list(MlflowClient(uri, uri).search_model_versions(f"name = '{model}'"))


def test_two_concurrent_deliveries_of_one_run_make_one_version(
    mlflow_server: MlflowServer, postgres: Postgres, model: str, tmp_path: Path
) -> None:
    uri, lock_uri = mlflow_server.url, postgres.sqlalchemy_uri("mlflow")
    record = delivery(tmp_path, f"{model}-run")
    trackers = [MlflowTracker(uri, lock_uri=lock_uri), MlflowTracker(uri, lock_uri=lock_uri)]
    with held_lock(postgres, "mlflow", model) as lock:  # both have logged their run and wait to register
        threads, results = in_threads(*(lambda t=t: t.record(record, model) for t in trackers))
        wait_until("both deliveries waiting for the lock", lambda: lock.waiting() == 2, 120)
        lock.release()
        one, two = joined(threads, results)

    assert one == two and one.model_version == "1" and one.champion
    (version,) = versions_of(uri, model)
    (run,) = runs_of(uri, record.run_name)  # the other delivery's MLflow run was deleted
    assert (run.info.run_id, run.info.status) == (one.run_id, "FINISHED") == (version.run_id, "FINISHED")
    assert len(MlflowRegistry(uri).history(model)) == 1


@pytest.mark.parametrize("stopped", ["before the gate", "after the alias move"])
def test_a_delivery_that_stopped_after_creating_its_version_is_finished_when_sent_again_never_duplicated(
    stopped: str,
    mlflow_server: MlflowServer,
    postgres: Postgres,
    model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = mlflow_server.url
    record = delivery(tmp_path, f"{model}-run")
    tracker = MlflowTracker(uri, lock_uri=postgres.sqlalchemy_uri("mlflow"))
    real_gate = MlflowRegistry.apply_gate

    def gate_then_stop(self: MlflowRegistry, name: str, version: str, *args: Any) -> Any:
        if stopped == "after the alias move":  # crowned, history written, the reason not yet
            real_gate(self, name, version, *args)
            from mlflow.tracking import MlflowClient

            MlflowClient(uri, uri).delete_model_version_tag(name, version, REASON_TAG)
        raise TrackingError("MLflow went away")  # what the outbox then holds

    monkeypatch.setattr(MlflowRegistry, "apply_gate", gate_then_stop)
    with pytest.raises(TrackingError):
        tracker.record(record, model)
    (left,) = runs_of(uri, record.run_name)
    assert left.info.status == "RUNNING" and len(versions_of(uri, model)) == 1
    monkeypatch.setattr(MlflowRegistry, "apply_gate", real_gate)

    again = tracker.record(record, model)  # the outbox's retry

    (version,) = versions_of(uri, model)
    (run,) = runs_of(uri, record.run_name)
    assert (again.model_version, again.champion, again.run_id) == ("1", True, left.info.run_id)
    assert again.promoted_reason == "no champion yet" == version.tags[REASON_TAG]
    assert run.info.status == "FINISHED" and version.run_id == run.info.run_id
    history = MlflowRegistry(uri).history(model)
    assert [(h.version, h.by) for h in history] == [("1", record.run_name)]  # crowned once
    assert tracker.record(record, model) == again  # and a third delivery answers the same


# --- two real daemons -------------------------------------------------------------------------------


@pytest.mark.podman
@pytest.mark.slow
def test_two_daemons_on_one_registry_seeing_the_same_new_data_move_the_champion_once(
    tmp_path: Path, podman_ready: None, mlflow_server: MlflowServer, postgres: Postgres
) -> None:
    from mlflow.tracking import MlflowClient

    model, experiment = f"two-daemons-{uuid.uuid4().hex[:8]}", f"two-daemons-{uuid.uuid4().hex[:8]}"
    repo, data = committed_copy(tmp_path / "repo"), tmp_path / "data"  # one repository, one data dir
    data.mkdir()
    env = {
        "RETRAIND_TRACKING_URI": mlflow_server.url,
        "RETRAIND_PROMOTION_LOCK_URI": postgres.sqlalchemy_uri("mlflow"),  # the server's backend
        "RETRAIND_EXPERIMENT": experiment,
        "RETRAIND_MODEL_NAME": model,
    }
    daemons = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        daemons.append(Daemon(repo, data, tmp_path / name / "state", tmp_path / name, **env))
    try:
        with held_lock(postgres, "mlflow", model) as lock:
            for d in daemons:
                d.start()
            incoming = tmp_path / "incoming.csv"
            shutil.copy(ROOT / "data/sample.csv", incoming)
            os.replace(incoming, data / "drop.csv")  # whole, at one moment, for both
            started = time.monotonic()

            def both_waiting() -> bool:
                for d in daemons:
                    assert d.proc is not None and d.proc.poll() is None, d.lines[-5:]
                return lock.waiting() == 2

            wait_until("both daemons' register stages waiting for the lock", both_waiting, RUN_DEADLINE_S)
            trained_s = time.monotonic() - started
            lock.release()
        (run_a,), (run_b,) = (d.wait_idle(runs=1) for d in daemons)
    finally:
        for d in daemons:
            d.stop()
    print(f"both daemons reached the promotion lock {trained_s:.1f} s after the drop")

    assert run_a.status == run_b.status == "succeeded", (run_a, run_b)
    assert sorted([run_a.champion, run_b.champion]) == [0, 1]
    winner, loser = (run_a, run_b) if run_a.champion else (run_b, run_a)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name = '{model}'")}
    assert sorted(versions) == ["1", "2"]  # one version per retraind run, no duplicate
    assert sorted(mv.tags[RUN_ID_TAG] for mv in versions.values()) == sorted([run_a.run_id, run_b.run_id])
    assert {versions[r.model_version or ""].run_id for r in (winner, loser)} == {
        winner.mlflow_run_id,
        loser.mlflow_run_id,
    }
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.data.tags[RUN_ID_TAG] for r in found) == sorted([run_a.run_id, run_b.run_id])
    assert all(r.info.status == "FINISHED" for r in found)

    same = {(r.data.tags[PREDICTIONS_TAG], r.data.tags[DATA_SHA256_TAG]) for r in found}
    assert len(same) == 1  # two daemons, one commit, one drop: the same model
    ((predictions, data_sha),) = same
    history = MlflowRegistry(mlflow_server.url).history(model)
    assert [(h.version, h.previous, h.action, h.by) for h in history] == [
        (winner.model_version, None, "gate", winner.run_id)
    ]  # exactly one champion move
    aliases = {k: str(v) for k, v in client.get_registered_model(model).aliases.items()}
    assert aliases == {CHAMPION: winner.model_version, CHALLENGER: loser.model_version}
    assert versions[loser.model_version or ""].tags[REASON_TAG] == (
        f"the same model as champion v{winner.model_version}: identical predictions"
        f" (sha256 {predictions[:12]}) on the same data (sha256 {data_sha[:12]})"
    )
