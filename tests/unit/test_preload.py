"""MLflow is imported in the background when a run starts, so that the register stage finds it loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from daemon.adapters.registry import preload_mlflow
before = "mlflow" in sys.modules
preload_mlflow({uri!r}).join()
loaded = sorted(m for m in sys.modules if m.startswith("mlflow.store."))
print(json.dumps({{"before": before, "loaded": loaded}}))
"""


@pytest.mark.parametrize(
    ("uri", "store"),
    [
        ("sqlite:////tmp/x.db", "mlflow.store.tracking.sqlalchemy_store"),
        ("postgresql://u@localhost/mlflow", "mlflow.store.tracking.sqlalchemy_store"),
        ("http://127.0.0.1:5000", "mlflow.store.tracking.rest_store"),
    ],
)
def test_the_store_the_client_will_open_is_loaded_and_nothing_was_before(uri: str, store: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(uri=uri)], capture_output=True, text=True, check=True, timeout=120
    )
    probe = json.loads(done.stdout.splitlines()[-1])
    assert probe["before"] is False  # importing the registry module costs nothing
    assert store in probe["loaded"]
