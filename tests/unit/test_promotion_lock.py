"""The promotion lock's pure parts (the key, the DSN and its password, where the lock lives), the file
lock between threads, and the gate's rule for a candidate that is the champion's model over again."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest

from daemon.adapters.promotionlock import (
    FILE,
    POSTGRES,
    LockTarget,
    PromotionLock,
    advisory_key,
    is_postgres,
    libpq_uri,
    lock_target,
    redacted,
    scrubbed,
)
from daemon.adapters.registry import mlflow_boundary
from daemon.commands.doctor import check_promotion_lock
from daemon.core.config import Settings, load_settings
from daemon.core.errors import ConfigError, TrackingError
from daemon.core.promotion import DATA_SHA256_TAG, Decision, ModelIdentity, decide
from daemon.core.records import PREDICTIONS_TAG

SECRET = "s3cr%40t-pw"  # percent-encoded "@" in the URI: libpq decodes it to s3cr@t-pw
PG = f"postgresql+psycopg2://mlflow:{SECRET}@db.lab:5433/mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the key --------------------------------------------------------------------------------------


def test_the_key_is_the_first_8_bytes_of_sha256_of_the_namespaced_name_as_a_signed_bigint() -> None:
    digest = hashlib.sha256(b"retraind.promotion:nlp-sentiment-classifier").digest()
    assert advisory_key("nlp-sentiment-classifier") == int.from_bytes(digest[:8], "big", signed=True)
    # pinned: every daemon of every version must compute the same key for one model
    assert advisory_key("nlp-sentiment-classifier") == 6941799305444236193


def test_keys_are_signed_64_bit_and_differ_by_name() -> None:
    names = ["a", "b", "nlp-sentiment-classifier", "NLP-sentiment-classifier", "ä", ""]
    keys = [advisory_key(n) for n in names]
    assert len(set(keys)) == len(names)
    assert all(-(2**63) <= k < 2**63 for k in keys)


# --- the DSN and its password -----------------------------------------------------------------------


def test_postgresql_uris_are_recognised_and_the_sqlalchemy_driver_is_dropped_for_libpq() -> None:
    assert all(map(is_postgres, ["postgresql://h/d", "postgres://h/d", PG, "postgresql+pg8000://h/d"]))
    assert not any(map(is_postgres, ["http://h:5000", "sqlite:///x.db", "mysql://h/d", "/var/x", ""]))
    assert libpq_uri(PG) == f"postgresql://mlflow:{SECRET}@db.lab:5433/mlflow"
    assert libpq_uri("postgresql://u@h/d?sslmode=require") == "postgresql://u@h/d?sslmode=require"


def test_redacted_names_the_server_without_the_password() -> None:
    assert redacted(PG) == "postgresql+psycopg2://mlflow@db.lab:5433/mlflow"
    assert (
        redacted("postgresql://u:pw@h/d?password=pw2&sslmode=require") == "postgresql://u@h/d?sslmode=require"
    )
    assert redacted("postgresql://u:pw@[::1]:5432/d") == "postgresql://u@[::1]:5432/d"
    for plain in ("http://127.0.0.1:5000", "sqlite:////tmp/x/mlflow.db", "postgresql://u@h/d"):
        assert redacted(plain) == plain  # nothing to hide: unchanged


def test_scrubbed_removes_the_password_as_written_and_as_decoded() -> None:
    text = f"FATAL: no luck for s3cr@t-pw or {SECRET} in postgresql://mlflow:{SECRET}@db.lab"
    out = scrubbed(text, PG)
    assert "s3cr" not in out and out.count("***") == 3


def test_an_unreachable_lock_database_is_a_tracking_error_naming_the_server_never_the_password() -> None:
    port = free_port()  # nothing listens there
    uri = f"postgresql://retraind:{SECRET}@127.0.0.1:{port}/mlflow"
    lock = PromotionLock("http://127.0.0.1:5000", uri)
    with pytest.raises(TrackingError) as e, lock.held("m"):
        pytest.fail("the lock cannot have been taken")
    message = str(e.value)
    assert f"postgresql://retraind@127.0.0.1:{port}/mlflow" in message
    assert "s3cr" not in message and "nothing was changed" in message
    assert e.value.__cause__ is None and e.value.__context__ is not None  # raised "from None"


def test_mlflow_errors_never_show_a_postgresql_tracking_uri_s_password() -> None:
    with pytest.raises(TrackingError) as e, mlflow_boundary(PG):
        raise RuntimeError(f"could not connect with {SECRET}")
    assert "s3cr" not in str(e.value) and "postgresql+psycopg2://mlflow@db.lab:5433/mlflow" in str(e.value)


# --- where the lock lives -------------------------------------------------------------------------


def test_the_lock_is_derived_from_the_tracking_uri_unless_promotion_lock_uri_names_one(
    tmp_path: Path,
) -> None:
    assert lock_target(PG) == LockTarget(POSTGRES, PG)
    db = tmp_path / "state/mlflow.db"
    assert lock_target(f"sqlite:///{db}") == LockTarget(FILE, f"{db}.promotion-lock")
    assert lock_target("http://127.0.0.1:5000") is None  # one daemon on a server: no lock
    assert lock_target("http://127.0.0.1:5000", PG) == LockTarget(POSTGRES, PG)
    assert lock_target(f"sqlite:///{db}", PG) == LockTarget(POSTGRES, PG)  # the setting wins
    assert (
        LockTarget(POSTGRES, PG).shown
        == "PostgreSQL advisory lock on postgresql+psycopg2://mlflow@db.lab:5433/mlflow"
    )


def test_a_promotion_lock_uri_that_is_no_database_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError, match="promotion_lock_uri must be") as e:
        lock_target("http://127.0.0.1:5000", f"mysql://u:{SECRET}@h/mlflow")
    assert "s3cr" not in str(e.value) and "mysql://u@h/mlflow" in str(e.value)


def settings(tmp_path: Path, **values: str) -> Settings:
    return load_settings({"state_dir": tmp_path / "state", **values}, environ={"HOME": str(tmp_path)})


def test_doctor_warns_once_about_an_http_server_without_the_lock(tmp_path: Path) -> None:
    (check,) = check_promotion_lock(settings(tmp_path, tracking_uri="http://127.0.0.1:5000"))
    assert (check.ok, check.warning_only) == (False, True)
    assert (
        "several daemons on that server need promotion_lock_uri = MLflow's backend database" in check.detail
    )
    assert "RETRAIND_PROMOTION_LOCK_URI" in check.fix
    (locked,) = check_promotion_lock(
        settings(tmp_path, tracking_uri="http://127.0.0.1:5000", promotion_lock_uri=PG)
    )
    assert locked.ok and "s3cr" not in locked.detail and "db.lab:5433" in locked.detail
    (embedded,) = check_promotion_lock(settings(tmp_path))
    assert embedded.ok and embedded.detail.startswith("file lock ")


# --- the file lock (an embedded SQLite store) ---------------------------------------------------------


def test_the_file_lock_serialises_threads_and_is_reentrant_in_one(tmp_path: Path) -> None:
    lock = PromotionLock(f"sqlite:///{tmp_path}/mlflow.db")
    order: list[str] = []

    def other() -> None:
        with lock.held("m"):
            order.append("other")

    with lock.held("m"):
        with lock.held("m"):  # the tracker holds it around the gate, which takes it again
            order.append("outer")
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # blocked on the lock this thread holds
        order.append("still mine")
    thread.join(10)
    assert order == ["outer", "still mine", "other"]
    assert (tmp_path / "mlflow.db.promotion-lock").stat().st_mode & 0o777 == 0o600


def test_a_file_lock_not_free_in_time_is_a_tracking_error(tmp_path: Path) -> None:
    held, release = threading.Event(), threading.Event()
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def holder() -> None:
        with PromotionLock(uri).held("m"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with (
            pytest.raises(TrackingError, match="was not free within 0 s"),
            PromotionLock(uri, wait_s=0.2).held("m"),
        ):
            pytest.fail("the lock cannot have been taken")
        assert time.monotonic() - started < 5
    finally:
        release.set()
        thread.join(10)


def test_an_http_server_without_promotion_lock_uri_takes_no_lock() -> None:
    lock = PromotionLock("http://127.0.0.1:5000")
    assert lock.shown == "none"
    with lock.held("m") as held, lock.held("m"):
        held.check()


# --- the gate: the champion's model over again ----------------------------------------------------------


SAME = ModelIdentity("6a432f17cb55" + "0" * 52, "9bc3e423e085" + "1" * 52)


def test_identity_comes_from_the_run_tags_and_needs_both() -> None:
    assert (
        ModelIdentity.of({PREDICTIONS_TAG: SAME.predictions_sha256, DATA_SHA256_TAG: SAME.data_sha256})
        == SAME
    )
    assert ModelIdentity.of({PREDICTIONS_TAG: "abc"}) is None
    assert ModelIdentity.of({DATA_SHA256_TAG: "abc", PREDICTIONS_TAG: ""}) is None


def test_the_same_predictions_on_the_same_data_never_replace_the_champion() -> None:
    decision = decide(0.7403, 0.7403, 0.0, 0.0, "1", candidate=SAME, champion_identity=SAME)
    assert decision == Decision(
        False,
        "the same model as champion v1: identical predictions (sha256 6a432f17cb55) on the same data"
        " (sha256 9bc3e423e085)",
    )
    # whatever the tolerance, and even if the champion's F1 were lower (it cannot be: same predictions)
    assert not decide(0.75, 0.74, 1.0, 0.0, "1", candidate=SAME, champion_identity=SAME).promote


def test_other_predictions_or_other_data_are_judged_on_weighted_f1_as_before() -> None:
    other_predictions = ModelIdentity("f" * 64, SAME.data_sha256)
    other_data = ModelIdentity(SAME.predictions_sha256, "e" * 64)
    for candidate in (other_predictions, other_data, None):
        assert decide(0.7403, 0.7403, 0.0, 0.0, "1", candidate=candidate, champion_identity=SAME).promote
    assert decide(
        0.7403, 0.7403, 0.0, 0.0, "1", candidate=SAME, champion_identity=None
    ).promote  # tags missing


def test_the_floor_and_the_first_champion_come_before_the_identity_rule() -> None:
    assert decide(0.5, 0.5, 0.0, 0.6, "1", candidate=SAME, champion_identity=SAME).reason == (
        "weighted F1 0.5000 is not above the floor 0.6000"
    )
    assert decide(0.7, None, 0.0, 0.0, candidate=SAME) == Decision(True, "no champion yet")
