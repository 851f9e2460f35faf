"""The champion's F1, read from MLflow in a child process, so the idle daemon never imports MLflow.

`python -m daemon.adapters.champion TRACKING_URI MODEL_NAME` prints one JSON line, {"f1": 0.74} or
{"f1": null} (no champion); a failure exits 5 with the error on stderr. `ChampionProbe` runs it
through run_cmd and has the `champion_f1(name)` of MlflowRegistry, so the daemon's ChampionGauge
can take either.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

from daemon.adapters.proc import run_cmd
from daemon.core.errors import EXIT_INFRA, RetraindError, TrackingError
from daemon.core.jobs import CmdResult

Run = Callable[..., CmdResult]


class ChampionProbe:
    def __init__(
        self,
        tracking_uri: str,
        timeout_s: float = 120.0,
        python: str = sys.executable,
        run: Run = run_cmd,
    ) -> None:
        self.tracking_uri, self.timeout_s, self.python, self.run = tracking_uri, timeout_s, python, run

    def argv(self, model_name: str) -> tuple[str, ...]:
        return (self.python, "-m", "daemon.adapters.champion", self.tracking_uri, model_name)

    def champion_f1(self, model_name: str) -> float | None:
        """The weighted F1 of the version behind alias champion; None without one. TrackingError
        when MLflow cannot say (the child's own error), or the child does not answer in time."""
        try:
            done = self.run(self.argv(model_name), timeout=self.timeout_s)
        except RetraindError as e:  # not started, or past the timeout
            raise TrackingError(f"champion probe failed: {e}") from e
        if done.returncode != 0:
            raise TrackingError(f"champion probe exited {done.returncode}: {done.tail(5)}")
        try:
            f1 = json.loads(done.stdout.strip().splitlines()[-1])["f1"]
        except (IndexError, KeyError, ValueError, TypeError) as e:
            raise TrackingError(f"champion probe answered {done.stdout[-200:]!r}") from e
        return None if f1 is None else float(f1)


def main(argv: Sequence[str] | None = None) -> int:
    tracking_uri, model_name = argv if argv is not None else sys.argv[1:]
    from daemon.adapters.registry import MlflowRegistry  # the child's one job: MLflow is imported here only

    try:
        f1 = MlflowRegistry(tracking_uri).champion_f1(model_name)
    except RetraindError as e:
        print(str(e), file=sys.stderr)
        return EXIT_INFRA
    print(json.dumps({"f1": f1}))
    return 0


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(main())
