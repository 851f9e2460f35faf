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
    ) -> None:
        """Every registered version goes through the promotion gate (GatePolicy() by default)."""
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root if _is_local(tracking_uri) else None
        self.http_retries, self.http_timeout_s = http_retries, http_timeout_s
        self.policy = policy or GatePolicy()
        self.registry = MlflowRegistry(tracking_uri, http_retries, http_timeout_s)

    def _client(self) -> Any:
        return mlflow_client(self.tracking_uri, self.http_retries, self.http_timeout_s)

    def _experiment_id(self, client: Any, name: str) -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_root.resolve().as_uri() if self.artifact_root else None
        return str(client.create_experiment(name, artifact_location=location))

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
            return [str(r.info.run_id) for r in runs]

    def _record(self, run: RunRecord, model_name: str) -> Registration:
        from mlflow.entities import Metric, Param

        client = self._client()
        experiment_id = self._experiment_id(client, run.experiment)
        done = self._already_recorded(client, experiment_id, run.tags.get(RUN_ID_TAG, ""), model_name)
        if done is not None:
            return done
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
        registration = Registration(run_id, None, False, experiment_id=experiment_id)
        if run.model_dir is not None:
            client.log_artifacts(run_id, str(run.model_dir), "model")
            registration = self._register(
                client, run_id, created.info.artifact_uri, model_name, run, experiment_id
            )
        client.set_terminated(run_id, run.status)
        return registration

    def _already_recorded(
        self, client: Any, experiment_id: str, key: str, model_name: str
    ) -> Registration | None:
        """Exactly once: a FINISHED run with this key is the answer; a partial one is replaced."""
        if not key:
            return None
        query = f"tags.`{RUN_ID_TAG}` = '{key}'"
        for found in client.search_runs([experiment_id], filter_string=query):
            if found.info.status == "FINISHED":
                versions = client.search_model_versions(f"run_id = '{found.info.run_id}'")
                if not versions:
                    return Registration(str(found.info.run_id), None, False, experiment_id=experiment_id)
                mv = versions[0]
                champion = client.get_registered_model(model_name).aliases.get(CHAMPION)
                return Registration(
                    str(found.info.run_id),
                    str(mv.version),
                    champion is not None and str(champion) == str(mv.version),
                    str(mv.tags.get(REASON_TAG, "")),
                    mv.tags.get(AGAINST_TAG),
                    float(mv.tags[AGAINST_F1_TAG]) if AGAINST_F1_TAG in mv.tags else None,
                    experiment_id,
                )
            client.delete_run(found.info.run_id)  # left by an attempt that died half-way
        return None

    def _register(
        self, client: Any, run_id: str, artifact_uri: str, name: str, run: RunRecord, experiment_id: str
    ) -> Registration:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="retraind sentiment classifier")
        mv = client.create_model_version(
            name,
            f"{artifact_uri}/model",
            run_id=run_id,
            tags={k: v for k, v in run.tags.items() if k.startswith("retraind.")},
        )
        version = str(mv.version)
        f1 = float(run.metrics.get(F1_METRIC, math.nan))
        by = run.tags.get(RUN_ID_TAG) or "retraind"
        decision = self.registry.apply_gate(name, version, f1, by, self.policy)
        registration = Registration(
            run_id,
            version,
            decision.promote,
            decision.reason,
            decision.against,
            decision.against_f1,
            experiment_id,
        )
        if run.report:
            self._log_report(client, run, registration, name, f1)
        return registration

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
