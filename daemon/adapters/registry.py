"""MLflow's Model Registry behind one adapter: champion/challenger aliases, stages, promotion history."""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.adapters.logs import adopt_library_loggers
from daemon.adapters.promotionlock import Held, PromotionLock, redacted, scrubbed
from daemon.adapters.statedir import sqlite_path
from daemon.core.errors import RegistryError, RetraindError, TrackingError
from daemon.core.promotion import (
    F1_METRIC,
    HISTORY_PREFIX,
    Decision,
    GatePolicy,
    HistoryEntry,
    ModelIdentity,
    VersionRow,
    decide,
    history_key,
    parse_history,
    rollback_target,
)
from daemon.core.records import IMAGE_TAG, PREDICTIONS_TAG, RUN_ID_TAG
from daemon.core.serving import Served

CHAMPION = "champion"
CHALLENGER = "challenger"
REASON_TAG = "retraind.promotion.reason"  # model version tag: why it is, or is not, champion
# model version tags: the champion the gate measured it against, and that champion's weighted F1
AGAINST_TAG, AGAINST_F1_TAG = "retraind.promotion.against", "retraind.promotion.against_f1"
MAX_REASON_CHARS = 1000  # registered-model tag values are limited (5000 characters)


def _never_used(path: Path) -> bool:
    """Whether the SQLite file at path holds no experiment (or no experiments table): MLflow's
    creation of it never finished, so nothing can have been recorded in it."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False  # MLflow will say what is wrong with it
    try:
        return int(con.execute("SELECT count(*) FROM experiments").fetchone()[0]) == 0
    except sqlite3.OperationalError:  # no such table (or an empty file)
        return True
    except sqlite3.DatabaseError:
        return False
    finally:
        con.close()


def _remove_orphans(path: Path) -> None:
    """Temporary databases of creators killed before they could remove their own."""
    for tmp in path.parent.glob(f".{path.name}.*-*.tmp"):
        pid = tmp.name.removeprefix(f".{path.name}.").split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError):  # not one of ours, or another user's live process
            continue


def prepare_sqlite_store(tracking_uri: str) -> Path | None:
    """Create a missing SQLite tracking database whole, or not at all.

    MLflow creates one table by table (its migrations, 2-3 s), and SQLite runs that DDL outside a
    transaction: a process killed meanwhile (the daemon's first start, kill -9, power loss) left a
    file on which every later MLflow call failed ("table secrets already exists"). So the database
    is made in a file of its own beside the target and hard-linked into place, which succeeds only
    if no other process got there first (theirs is as good). A file left half-made by an older
    version, with no experiment in it (or empty), is moved aside (`<name>.incomplete-<time>`) and
    made anew. The file is created 0600. Returns the file moved aside, if any. Other URIs are left
    alone.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return None
    aside = None
    if path.exists():
        if not _never_used(path):
            return None
        aside = path.with_name(f"{path.name}.incomplete-{int(time.time())}")
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.replace(path, aside)
        structlog.get_logger().warning(
            "mlflow_db_moved_aside", path=str(path), to=str(aside), why="its creation never finished"
        )
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    adopt_library_loggers()  # MLflow's "Creating initial MLflow database tables" is a log line of ours

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        os.close(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        )  # private from birth
        store = SqlAlchemyStore(f"sqlite:///{tmp}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)  # type: ignore[no-untyped-call]
        store.engine.dispose()  # every connection closed: the file is complete
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return aside


@contextmanager
def mlflow_boundary(tracking_uri: str, what: str = "MLflow") -> Iterator[None]:
    """The one place MLflow's exceptions become ours: it raises many kinds (MlflowException,
    SQLAlchemy's, requests', OSError...), every one a TrackingError here; ours pass through."""
    try:
        yield
    except RetraindError:
        raise
    except Exception as e:  # a postgresql:// tracking URI carries a password: never in a message
        raise TrackingError(
            f"{what} at {redacted(tracking_uri)} failed: {scrubbed(str(e), tracking_uri)}"
        ) from e


def mlflow_client(tracking_uri: str, http_retries: int = 2, http_timeout_s: int = 20) -> Any:
    """MLflow is imported lazily: it costs seconds and most commands never need it."""
    from mlflow.tracking import MlflowClient

    adopt_library_loggers()  # importing mlflow gave its loggers their own stderr handler, at INFO
    prepare_sqlite_store(tracking_uri)
    # MLflow's client retries a dead server for minutes by default; the outbox retries instead.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(http_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(http_timeout_s)
    # Against an http server, ending a run writes "View run ... at: URL" to stdout (MLflow 3.17,
    # TrackingServiceClient._log_url): stdout carries only our log lines.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # tqdm bars are not log lines
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _store_modules(tracking_uri: str) -> tuple[str, ...]:
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return ("mlflow.store.tracking.rest_store", "mlflow.store.model_registry.rest_store")
    return ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")


def preload_mlflow(tracking_uri: str) -> threading.Thread:
    """Import MLflow, and the store its client will open for tracking_uri, in a background thread.

    Started when a run starts: the imports (2.3 of the register stage's 2.6 s on the corpus) then
    overlap the containers, which leave this process idle. Python's per-module import locks make a
    later import in another thread wait for this one rather than start again. A failure is
    swallowed: the import that needs the module raises it where it is handled.
    """

    def load() -> None:
        for name in ("mlflow", "mlflow.tracking", "mlflow.entities", *_store_modules(tracking_uri)):
            try:
                importlib.import_module(name)
            except Exception:  # raised again, and handled, by the import that needs it
                continue

    thread = threading.Thread(target=load, name="mlflow-preload", daemon=True)
    thread.start()
    return thread


TEST_PREDICTIONS = "test_predictions.jsonl"  # scripts/train.py writes it; register logs it at the run's root


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MlflowRegistry:
    """Aliases are the truth; stages are mirrored for dashboards; history lives in model tags.

    Every change of champion (the gate, promote, rollback) reads the champion, decides and moves the
    alias holding the model's promotion lock (adapters/promotionlock.py: lock_uri, else derived
    from the tracking URI), so daemons sharing the registry decide one after the other, each against
    the champion the one before it left.
    """

    def __init__(
        self,
        tracking_uri: str,
        http_retries: int = 2,
        http_timeout_s: int = 20,
        now: Callable[[], datetime] = _utc_now,
        lock_uri: str = "",
        lock: PromotionLock | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.http_retries, self.http_timeout_s = http_retries, http_timeout_s
        self.now = now
        self.lock = lock or PromotionLock(tracking_uri, lock_uri)

    @contextmanager
    def _boundary(self) -> Iterator[Any]:
        with mlflow_boundary(self.tracking_uri, "MLflow registry"):
            yield mlflow_client(self.tracking_uri, self.http_retries, self.http_timeout_s)

    def apply_gate(
        self, name: str, version: str, candidate_f1: float, run_id_label: str, policy: GatePolicy
    ) -> Decision:
        """Champion if it passes the gate, else challenger; the reason goes on the version either way.

        Holding the model's promotion lock from the read of the champion to the move of the alias.
        The reason tag is written last: a version that has one was decided, and deciding it again (a
        delivery sent twice) answers what was decided then instead of moving anything.
        """
        with self._boundary() as client, self.lock.held(name) as held:
            mv = client.get_model_version(name, version)
            if REASON_TAG in mv.tags:
                return _recorded_decision(client, name, mv)
            run_id = str(mv.run_id or "")
            champion = _alias(client, name, CHAMPION)
            if champion == version:  # a delivery that stopped between the alias move and the reason
                return self._finish_crowning(client, name, mv, run_id_label, policy, held)
            champion_f1 = _f1(client, name, champion) if champion is not None else None
            decision = decide(
                candidate_f1,
                champion_f1,
                policy.tolerance,
                policy.floor,
                champion or "",
                candidate=_identity(client, run_id),
                champion_identity=_identity(client, _run_of(client, name, champion)) if champion else None,
            )
            decision = replace(decision, against=champion, against_f1=champion_f1)
            if champion is not None:  # so that a run sent again reports what it was measured against
                client.set_model_version_tag(name, version, AGAINST_TAG, champion)
                if champion_f1 is not None:
                    client.set_model_version_tag(name, version, AGAINST_F1_TAG, repr(champion_f1))
            held.check()  # the lock is still ours: nothing has moved yet
            if not decision.promote:
                client.set_registered_model_alias(name, CHALLENGER, version)
            else:
                entry = self._entry(version, champion, "gate", run_id_label, decision.reason, run_id)
                self._crown(client, name, entry, policy.mirror_stages)
            client.set_model_version_tag(name, version, REASON_TAG, decision.reason[:MAX_REASON_CHARS])
            return decision

    def _finish_crowning(
        self, client: Any, name: str, mv: Any, by: str, policy: GatePolicy, held: Held
    ) -> Decision:
        """The version is champion but has no reason yet: its gate moved the alias and stopped. The
        history entry (if it was not written) and the stages are done again; the reason last."""
        version, run_id = str(mv.version), str(mv.run_id or "")
        against = mv.tags.get(AGAINST_TAG)
        against_f1 = float(mv.tags[AGAINST_F1_TAG]) if AGAINST_F1_TAG in mv.tags else None
        mine = [h for h in self._history(client, name) if h.version == version and h.mlflow_run_id == run_id]
        if mine:
            reason = mine[-1].reason
        else:
            reason = "champion already: its gate stopped after moving the alias"
            held.check()
            entry = self._entry(version, against, "gate", by, reason, run_id)
            self._crown(client, name, entry, policy.mirror_stages)
        client.set_model_version_tag(name, version, REASON_TAG, reason[:MAX_REASON_CHARS])
        return Decision(True, reason, against, against_f1)

    def promote(
        self, name: str, version: str, by: str, reason: str, mirror_stages: bool = True
    ) -> HistoryEntry:
        """A person makes `version` champion, whatever the gate said."""
        with self._boundary() as client, self.lock.held(name) as held:
            mv = _version(client, name, version)
            champion = _alias(client, name, CHAMPION)
            if champion == version:
                raise RegistryError(f"{name} v{version} is already the champion")
            entry = self._entry(version, champion, "promote", by, reason, str(mv.run_id or ""))
            client.set_model_version_tag(name, version, REASON_TAG, _tag_reason(entry))
            held.check()
            self._crown(client, name, entry, mirror_stages)
            return entry

    def rollback(self, name: str, by: str, reason: str, mirror_stages: bool = True) -> str:
        """Make the champion before the current one champion again; returns its version."""
        with self._boundary() as client, self.lock.held(name) as held:
            champion = _alias(client, name, CHAMPION)
            if champion is None:
                raise RegistryError(f"{name} has no champion to roll back from")
            target = rollback_target(self._history(client, name), champion)
            if target is None:
                raise RegistryError(
                    f"{name}: the promotion history has no champion before v{champion} to roll back to;"
                    " use `retraind promote VERSION` to choose one"
                )
            mv = _version(client, name, target)
            entry = self._entry(target, champion, "rollback", by, reason, str(mv.run_id or ""))
            client.set_model_version_tag(name, target, REASON_TAG, _tag_reason(entry))
            held.check()
            self._crown(client, name, entry, mirror_stages)
            return target

    def history(self, name: str) -> list[HistoryEntry]:
        """Every change of champion, oldest first."""
        with self._boundary() as client:
            return self._history(client, name)

    def champion_f1(self, name: str) -> float | None:
        """The weighted F1 of the version behind alias champion (None: no champion, or no F1)."""
        with self._boundary() as client:
            version = _alias(client, name, CHAMPION)
            return None if version is None else _f1(client, name, version)

    def champion(self, name: str) -> Served | None:
        """The version behind alias champion and what serving it needs: its run and the image that
        run was built with (None: no champion yet)."""
        return self._served(name, CHAMPION)

    def challenger(self, name: str) -> Served | None:
        """The version behind alias challenger (the last that failed the gate), as champion()."""
        return self._served(name, CHALLENGER)

    def _served(self, name: str, alias: str) -> Served | None:
        with self._boundary() as client:
            version = _alias(client, name, alias)
            if version is None:
                return None
            mv = client.get_model_version(name, version)
            run_id = str(mv.run_id or "")
            tags = client.get_run(run_id).data.tags if run_id else {}
            image, predicted = str(tags.get(IMAGE_TAG, "")), str(tags.get(PREDICTIONS_TAG, ""))
            return Served(name, version, run_id, image, str(mv.source or ""), predicted)

    def download_model(self, served: Served, dest: Path) -> Path:
        """The version's MLflow model directory, downloaded into dest; returns its path."""
        dest.mkdir(parents=True, exist_ok=True)
        with self._boundary() as client:  # the register stage logged it at the run's model/
            return Path(client.download_artifacts(served.mlflow_run_id, "model", str(dest)))

    def recorded_predictions(self, served: Served, dest: Path) -> Path | None:
        """The run's test_predictions.jsonl (file, line, text, predicted label of each test row, in
        split order), downloaded into dest; None when the run has none."""
        from mlflow.exceptions import MlflowException

        dest.mkdir(parents=True, exist_ok=True)
        with self._boundary() as client:
            try:
                return Path(client.download_artifacts(served.mlflow_run_id, TEST_PREDICTIONS, str(dest)))
            except (MlflowException, OSError):
                return None

    def versions(self, name: str) -> list[VersionRow]:
        """Every version, newest first; an unknown model has none."""
        with self._boundary() as client:
            model = _registered_model(client, name, missing_ok=True)
            if model is None:
                return []
            aliases: dict[str, list[str]] = {}
            for alias, version in sorted(model.aliases.items()):
                aliases.setdefault(str(version), []).append(alias)
            found = client.search_model_versions(f"name = '{name}'")
            rows = [_row(client, mv, tuple(aliases.get(str(mv.version), ()))) for mv in found]
            return sorted(rows, key=lambda r: int(r.version) if r.version.isdigit() else 0, reverse=True)

    def _entry(
        self, version: str, previous: str | None, action: str, by: str, reason: str, run_id: str
    ) -> HistoryEntry:
        at = self.now().isoformat(timespec="seconds")
        return HistoryEntry(version, previous, action, at, by, reason[:MAX_REASON_CHARS], run_id)

    def _crown(self, client: Any, name: str, entry: HistoryEntry, mirror_stages: bool) -> None:
        """Alias first (the truth), then the history, then the stages (a mirror for dashboards)."""
        challenger = _alias(client, name, CHALLENGER)
        client.set_registered_model_alias(name, CHAMPION, entry.version)
        if challenger == entry.version:
            client.delete_registered_model_alias(name, CHALLENGER)
        tags = _registered_model(client, name).tags
        sequence = 1 + sum(1 for k in tags if k.startswith(HISTORY_PREFIX))
        client.set_registered_model_tag(name, history_key(sequence, secrets.token_hex(3)), entry.to_json())
        if mirror_stages:
            with warnings.catch_warnings():  # stages are deprecated since MLflow 2.9, aliases are not
                warnings.simplefilter("ignore", FutureWarning)
                if entry.previous is not None and entry.previous != entry.version:
                    client.transition_model_version_stage(name, entry.previous, "Archived")
                client.transition_model_version_stage(
                    name, entry.version, "Production", archive_existing_versions=True
                )

    def _history(self, client: Any, name: str) -> list[HistoryEntry]:
        model = _registered_model(client, name, missing_ok=True)
        if model is None:
            return []
        entries, bad = parse_history(model.tags)
        if bad:
            structlog.get_logger().warning("history_unreadable", model=name, tags=bad)
        return entries


def _tag_reason(entry: HistoryEntry) -> str:
    """A person's reason on the version says who and how: "promote by ada@lab: ..."."""
    return f"{entry.action} by {entry.by}: {entry.reason}"[:MAX_REASON_CHARS]


def _registered_model(client: Any, name: str, missing_ok: bool = False) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        if missing_ok:
            return None
        raise RegistryError(f"no registered model named {name!r} at this tracking URI") from e


def _alias(client: Any, name: str, alias: str) -> str | None:
    model = _registered_model(client, name, missing_ok=True)
    version = None if model is None else model.aliases.get(alias)
    return None if version is None else str(version)


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    _registered_model(client, name)
    try:
        return client.get_model_version(name, version)
    except MlflowException as e:
        found = client.search_model_versions(f"name = '{name}'")
        known = ", ".join(f"v{n}" for n in sorted(int(mv.version) for mv in found)) or "none"
        raise RegistryError(f"{name} has no version {version!r}; it has: {known}") from e


def _f1(client: Any, name: str, version: str) -> float | None:
    run_id = _run_of(client, name, version)
    return _run_f1(client, run_id) if run_id else None


def _run_of(client: Any, name: str, version: str) -> str:
    return str(client.get_model_version(name, version).run_id or "")


def _identity(client: Any, run_id: str) -> ModelIdentity | None:
    """The run's predictions and data hashes; None when the run is gone or lacks them."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return ModelIdentity.of(client.get_run(run_id).data.tags)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None


def _recorded_decision(client: Any, name: str, mv: Any) -> Decision:
    """What the gate decided for a version that has its reason: champion iff it still is."""
    tags = mv.tags
    champion = _alias(client, name, CHAMPION) == str(mv.version)
    against_f1 = float(tags[AGAINST_F1_TAG]) if AGAINST_F1_TAG in tags else None
    return Decision(champion, str(tags[REASON_TAG]), tags.get(AGAINST_TAG), against_f1)


def _run_f1(client: Any, run_id: str) -> float | None:
    """The run's weighted F1; None when the run is gone or never logged one."""
    from mlflow.exceptions import MlflowException

    try:
        value = client.get_run(run_id).data.metrics.get(F1_METRIC)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    return None if value is None else float(value)


def _row(client: Any, mv: Any, aliases: tuple[str, ...]) -> VersionRow:
    run_id = str(mv.run_id or "")
    f1 = _run_f1(client, run_id) if run_id else None
    created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC).isoformat(timespec="seconds")
    return VersionRow(
        version=str(mv.version),
        aliases=aliases,
        current_stage=str(mv.current_stage or "None"),
        f1=f1,
        mlflow_run_id=run_id,
        retraind_run_id=str(mv.tags.get(RUN_ID_TAG, "")),
        created=created,
        promotion_reason=str(mv.tags.get(REASON_TAG, "")),
    )
