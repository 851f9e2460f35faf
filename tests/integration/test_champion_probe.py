"""ChampionProbe against a real embedded MLflow: the child reads the champion's F1, and the process
that asked never imports MLflow (the idle daemon stays light)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.adapters.registry import CHAMPION

ASK = (
    "import json, sys;"
    "from daemon.adapters.champion import ChampionProbe;"
    "f1 = ChampionProbe(sys.argv[1]).champion_f1('probe-model');"
    "print(json.dumps({'f1': f1, 'mlflow_loaded': 'mlflow' in sys.modules}))"
)


def ask(uri: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", ASK, uri], capture_output=True, text=True, check=True)
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_champions_f1_comes_from_a_child_and_mlflow_stays_out_of_the_asker(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("probe", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "f1_score_weighted", 0.7403)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("probe-model")
    assert ask(uri) == {"f1": None, "mlflow_loaded": False}  # a model without a champion
    version = client.create_model_version("probe-model", f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias("probe-model", CHAMPION, version.version)
    assert ask(uri) == {"f1": 0.7403, "mlflow_loaded": False}
