"""What `retraind serve` serves and when it moves: the champion as served, and the follow policy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Served:
    """A registered version as serving needs it: the image its run was built with and its model."""

    model: str
    version: str
    mlflow_run_id: str
    image_id: str  # the run's retraind.image.id tag: the Python, scikit-learn and cleaner it trained with
    source: str = ""  # the model's artifact URI
    predictions_sha256: str = ""  # what the run's model predicted on its test split (its tag)

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version}"


@dataclass
class FollowPolicy:
    """When to start serving the champion the registry names.

    A version whose start failed is not tried again until `retry_s` has passed (its image may be
    rebuilt, MLflow may come back) or the champion moves to another version.
    """

    retry_s: float = 300.0
    failed_version: str | None = None
    failed_at: float = 0.0

    def should_start(self, champion: Served | None, serving: str | None, now: float) -> bool:
        if champion is None or champion.version == serving:
            return False
        return not (champion.version == self.failed_version and now - self.failed_at < self.retry_s)

    def failed(self, version: str, now: float) -> None:
        self.failed_version, self.failed_at = version, now

    def started(self) -> None:
        self.failed_version = None
