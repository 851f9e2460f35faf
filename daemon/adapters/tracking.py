"""MLflow behind the `Tracker` seam: log one pipeline run, register its model, apply the promotion gate."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import structlog

from daemon.adapters.registry import (
    AGAINST_F1_TAG,
    AGAINST_TAG,
    CHAMPION,
    MAX_REASON_CHARS,
    REASON_TAG,
    MlflowRegistry,
    mlflow_boundary,
    mlflow_client,
)
from daemon.core.promotion import F1_METRIC, GatePolicy
from daemon.core.records import (
    FAILURE_TAG,
    OUTCOME_TAG,
    REPORT_ARTIFACT,
    REPORT_FIGURES,
    RUN_ID_TAG,
    Registration,
    RunRecord,
)
from daemon.core.report import CONFUSION_IMAGE, render_report, version_figures


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


class MlflowTracker:
    """The real `Tracker`. MLflow is imported lazily: it costs seconds and most runs never need it."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: Path | None = None,
        http_retries: int = 2,
        http_timeout_s: int = 20,
        policy: GatePolicy | None = None,
        lock_uri: str = "",
    ) -> None:
        """Every registered version goes through the promotion gate (GatePolicy() by default),
        under the promotion lock of lock_uri (Settings.promotion_lock_uri; "" derives it from the
        tracking URI: adapters/promotionlock.py)."""
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root if _is_local(tracking_uri) else None
        self.http_retries, self.http_timeout_s = http_retries, http_timeout_s
        self.policy = policy or GatePolicy()
        self.registry = MlflowRegistry(tracking_uri, http_retries, http_timeout_s, lock_uri=lock_uri)

    def _client(self) -> Any:
        return mlflow_client(self.tracking_uri, self.http_retries, self.http_timeout_s)

    def _experiment_id(self, client: Any, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_root.resolve().as_uri() if self.artifact_root else None
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException as e:  # another daemon on this registry created it a moment ago
            found = client.get_experiment_by_name(name) if e.error_code == "RESOURCE_ALREADY_EXISTS" else None
            if found is None:
                raise
            return str(found.experiment_id)

    def record(self, run: RunRecord, model_name: str) -> Registration:
        """Log the run; when it has a model, register it and put it through the promotion gate."""
        with mlflow_boundary(self.tracking_uri):
            return self._record(run, model_name)

    def end_interrupted(self, retraind_run_id: str, reason: str) -> list[str]:
        """A crash can leave the MLflow run of a register stage RUNNING: end it FAILED, with why."""
        with mlflow_boundary(self.tracking_uri):
            client = self._client()
            runs = client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                filter_string=(
                    f"tags.`{RUN_ID_TAG}` = '{retraind_run_id}' and attributes.status = 'RUNNING'"
                ),
            )
            for r in runs:
                client.set_tag(r.info.run_id, OUTCOME_TAG, "interrupted")
                client.set_tag(r.info.run_id, FAILURE_TAG, reason)
                client.set_terminated(r.info.run_id, "FAILED")
                self._mark_ungated(client, str(r.info.run_id), reason)
            return [str(r.info.run_id) for r in runs]

    def _mark_ungated(self, client: Any, run_id: str, reason: str) -> None:
        """A version the crash left between its creation and its gate says so (`retraind models`);
        one holding an alias was decided, and keeps what it has."""
        for mv in client.search_model_versions(f"run_id = '{run_id}'"):
            if REASON_TAG not in mv.tags and not getattr(mv, "aliases", None):
                why = f"never gated: its run was interrupted during registration ({reason})"
                client.set_model_version_tag(mv.name, mv.version, REASON_TAG, why[:MAX_REASON_CHARS])

    def _record(self, run: RunRecord, model_name: str) -> Registration:
        """Exactly one MLflow run and at most one model version per pipeline run (its RUN_ID_TAG),
        however often and however concurrently it is delivered: a delivery finds what an earlier
        one left (_already_recorded), and the version is created holding the model's promotion
        lock, after a last look for a version of the same run that another delivery created."""
        from mlflow.entities import Metric, Param

        client = self._client()
        experiment_id = self._experiment_id(client, run.experiment)
        key = run.tags.get(RUN_ID_TAG, "")
        found = self._already_recorded(client, experiment_id, key, model_name, run)
        if found is not None:
            return found
        # Tags go in with the run itself, so even a run left RUNNING by a crash can be found.
        created = client.create_run(
            experiment_id,
            run_name=run.run_name,
            tags={k: str(v) for k, v in run.tags.items()},
        )
        run_id = str(created.info.run_id)
        now_ms = run.finished_ms or int(time.time() * 1000)  # what the dashboards plot F1 against
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now_ms, 0) for k, v in sorted(run.metrics.items())],
            params=[Param(k, str(v)) for k, v in sorted(run.params.items())],
        )
        for path, local in sorted(run.artifact_dirs.items()):
            client.log_artifacts(run_id, str(local), path or None)
        if run.model_dir is None:
            client.set_terminated(run_id, run.status)
            return Registration(run_id, None, False, experiment_id=experiment_id)
        client.log_artifacts(run_id, str(run.model_dir), "model")
        registration = self._register(
            client, run_id, created.info.artifact_uri, model_name, run, experiment_id
        )
        self._finish(client, run, registration, model_name)
        return registration

    def _already_recorded(
        self, client: Any, experiment_id: str, key: str, model_name: str, run: RunRecord
    ) -> Registration | None:
        """Exactly once: a FINISHED run with this key is the answer, and so is one a delivery left
        unfinished after registering its version (the gate is completed, or answers what it
        decided, and the run is finished). A partial run without a version is deleted: at once for
        a run without a model, else holding the lock once this delivery's version exists
        (_register), since it may be another delivery's, still uploading."""
        if not key:
            return None
        query = f"tags.`{RUN_ID_TAG}` = '{key}'"
        found = list(client.search_runs([experiment_id], filter_string=query))
        for r in sorted(found, key=lambda r: r.info.status != "FINISHED"):  # FINISHED ones first
            versions = client.search_model_versions(f"run_id = '{r.info.run_id}'")
            if r.info.status == "FINISHED":
                if not versions:
                    return Registration(str(r.info.run_id), None, False, experiment_id=experiment_id)
                return self._registration_of(client, versions[0], model_name, experiment_id)
            if versions:
                registration = self._gated(client, str(r.info.run_id), versions[0], run, experiment_id)
                self._finish(client, run, registration, model_name)
                return registration
            if run.model_dir is None:
                client.delete_run(r.info.run_id)  # left by an attempt that died half-way
        return None

    def _registration_of(self, client: Any, mv: Any, model_name: str, experiment_id: str) -> Registration:
        champion = client.get_registered_model(model_name).aliases.get(CHAMPION)
        return Registration(
            str(mv.run_id),
            str(mv.version),
            champion is not None and str(champion) == str(mv.version),
            str(mv.tags.get(REASON_TAG, "")),
            mv.tags.get(AGAINST_TAG),
            float(mv.tags[AGAINST_F1_TAG]) if AGAINST_F1_TAG in mv.tags else None,
            experiment_id,
        )

    def _gated(self, client: Any, run_id: str, mv: Any, run: RunRecord, experiment_id: str) -> Registration:
        """The version through the gate (which answers what it decided if it did already)."""
        name, version = str(mv.name), str(mv.version)
        f1 = float(run.metrics.get(F1_METRIC, math.nan))
        by = run.tags.get(RUN_ID_TAG) or "retraind"
        decision = self.registry.apply_gate(name, version, f1, by, self.policy)
        return Registration(
            run_id,
            version,
            decision.promote,
            decision.reason,
            decision.against,
            decision.against_f1,
            experiment_id,
        )

    def _finish(self, client: Any, run: RunRecord, registration: Registration, name: str) -> None:
        """The version's report, then the run FINISHED: what a delivery does after the gate."""
        if run.report:
            self._log_report(client, run, registration, name, float(run.metrics.get(F1_METRIC, math.nan)))
        client.set_terminated(registration.run_id, run.status)

    def _register(
        self, client: Any, run_id: str, artifact_uri: str, name: str, run: RunRecord, experiment_id: str
    ) -> Registration:
        """Create the version and gate it, holding the promotion lock throughout; when another
        delivery of the same pipeline run registered one meanwhile, that one is the answer and this
        delivery's MLflow run is deleted."""
        from mlflow.exceptions import MlflowException

        key = run.tags.get(RUN_ID_TAG, "")
        with self.registry.lock.held(name):
            try:
                client.get_registered_model(name)
            except MlflowException:
                client.create_registered_model(name, description="retraind sentiment classifier")
            theirs = self._version_of(client, name, key, run_id) if key else None
            if theirs is not None:
                client.delete_run(run_id)
                return self._gated(client, str(theirs.run_id), theirs, run, experiment_id)
            if client.get_run(run_id).info.lifecycle_stage == "deleted":
                client.restore_run(run_id)  # another delivery's clean-up took it for an abandoned one
            mv = client.create_model_version(
                name,
                f"{artifact_uri}/model",
                run_id=run_id,
                tags={k: v for k, v in run.tags.items() if k.startswith("retraind.")},
            )
            registration = self._gated(client, run_id, mv, run, experiment_id)
            if key:
                self._remove_abandoned(client, experiment_id, key, run_id)
        return registration

    def _version_of(self, client: Any, name: str, key: str, run_id: str) -> Any | None:
        """A version of this pipeline run created by another delivery (tagged with its key)."""
        query = f"name = '{name}' and tags.`{RUN_ID_TAG}` = '{key}'"
        others = [mv for mv in client.search_model_versions(query) if str(mv.run_id) != run_id]
        return min(others, key=lambda mv: int(mv.version)) if others else None

    def _remove_abandoned(self, client: Any, experiment_id: str, key: str, run_id: str) -> None:
        """Other unfinished MLflow runs of this pipeline run, without a version: deliveries that
        died half-way (or one still uploading, which will find this version under the lock)."""
        query = f"tags.`{RUN_ID_TAG}` = '{key}'"
        for r in client.search_runs([experiment_id], filter_string=query):
            other = str(r.info.run_id)
            unfinished = other != run_id and r.info.status != "FINISHED"
            if unfinished and not client.search_model_versions(f"run_id = '{other}'"):
                client.delete_run(other)

    def _log_report(self, client: Any, run: RunRecord, reg: Registration, name: str, f1: float) -> None:
        """The version's report: its figures (JSON) and the page. One that cannot be made or logged
        is a warning: the version is registered and gated either way."""
        import jinja2
        from mlflow.exceptions import MlflowException

        try:
            figures = version_figures(run.report, reg, name, f1)
            train_artifacts = run.artifact_dirs.get("")
            image = train_artifacts / CONFUSION_IMAGE if train_artifacts is not None else None
            png = image.read_bytes() if image is not None and image.is_file() else None
            page = render_report(figures, png)
            client.log_dict(reg.run_id, figures, REPORT_FIGURES)
            client.log_text(reg.run_id, page, REPORT_ARTIFACT)
        except (OSError, LookupError, TypeError, ValueError, jinja2.TemplateError, MlflowException) as e:
            structlog.get_logger().warning(
                "report_failed", run_id=reg.run_id, model=name, version=reg.model_version, error=repr(e)
            )
