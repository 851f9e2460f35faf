from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.errors import ConfigError


def test_defaults_follow_xdg(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "st")}
    s = load_settings({}, environ=env)
    assert s.state_dir == tmp_path / "st" / "retraind"
    assert s.data_dir == tmp_path / ".local/share/retraind/data"
    assert s.tracking_uri == f"sqlite:///{tmp_path}/st/retraind/mlflow.db"
    assert s.experiment == "NLP Text Classification"
    assert s.model_name == "nlp-sentiment-classifier"


def test_layers_file_then_env_then_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 1\nexperiment = "from-file"\nlabels = ["x", "y"]\nc = 0.5\n')
    env = {"HOME": str(tmp_path), "RETRAIND_SEED": "2", "MLFLOW_TRACKING_URI": "http://m:5000"}
    s = load_settings({"seed": 3, "experiment": None}, environ=env, config_file=cfg)
    assert (s.seed, s.experiment, s.labels, s.c) == (3, "from-file", ("x", "y"), 0.5)
    assert s.tracking_uri == "http://m:5000"


def test_retraind_tracking_uri_beats_mlflow_variable(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "RETRAIND_TRACKING_URI": "http://a", "MLFLOW_TRACKING_URI": "http://b"}
    assert load_settings({}, environ=env).tracking_uri == "http://a"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("bogus = 1\n", "unknown setting"),
        ("seed = 'x'\n", "seed"),
        ("test_size = 1.5\n", "test_size"),
        ("labels = ['one']\n", "two classes"),
        ("trigger = 'cosmic'\n", "trigger"),
        ("seed = [\n", "cannot read"),
    ],
)
def test_bad_configuration_is_refused_with_the_setting_named(
    tmp_path: Path, content: str, needle: str
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings({}, environ={"HOME": str(tmp_path)}, config_file=cfg)
    assert info.value.exit_code == 78


def test_systemd_environment_and_schedules(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "NOTIFY_SOCKET": "@notify",
        "WATCHDOG_USEC": "60000000",
        "RETRAIND_SCHEDULE": "0 3 * * *",
        "RETRAIND_SUPERSEDE": "true",
    }
    s = load_settings({}, environ=env)
    assert (s.notify_socket, s.watchdog_usec, s.schedule, s.supersede) == (
        "@notify",
        60_000_000,
        ("0 3 * * *",),
        True,
    )
    with pytest.raises(ConfigError, match="cron"):
        load_settings({}, environ={"HOME": str(tmp_path), "RETRAIND_SCHEDULE": "every night"})
    with pytest.raises(ConfigError, match="quiet_s"):
        load_settings(
            {}, environ={"HOME": str(tmp_path), "RETRAIND_QUIET_S": "5", "RETRAIND_MAX_WAIT_S": "1"}
        )


def test_relative_paths_from_flags_env_and_file_are_made_absolute_against_cwd(tmp_path: Path) -> None:
    """podman reads a relative --volume source as a named volume: every path is absolute at load."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('data_dir = "from-file/data"\n')
    env = {"HOME": str(tmp_path / "home"), "RETRAIND_REPO": "./code/../repo"}
    s = load_settings({"state_dir": Path("st")}, environ=env, config_file=cfg, cwd=tmp_path / "cwd")
    assert (s.repo, s.data_dir, s.state_dir) == (
        tmp_path / "cwd/repo",
        tmp_path / "cwd/from-file/data",
        tmp_path / "cwd/st",
    )
    assert s.tracking_uri == f"sqlite:///{tmp_path}/cwd/st/mlflow.db"


def test_home_is_expanded_from_the_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "RETRAIND_DATA_DIR": "~/drops", "RETRAIND_STATE_DIR": "~"}
    s = load_settings({}, environ=env, cwd=Path("/"))
    assert (s.data_dir, s.state_dir) == (tmp_path / "drops", tmp_path)


def test_a_relative_xdg_variable_is_ignored_as_the_spec_says(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": "rel/state"}
    s = load_settings({}, environ=env, cwd=tmp_path / "elsewhere")
    assert s.state_dir == tmp_path / ".local/state/retraind"


@pytest.mark.parametrize("kind", ["directory", "not utf-8", "missing"])
def test_an_unreadable_config_file_is_a_config_error_saying_what_to_do(tmp_path: Path, kind: str) -> None:
    cfg = tmp_path / "config.toml"
    if kind == "directory":
        cfg.mkdir()
    elif kind == "not utf-8":
        cfg.write_bytes(b'experiment = "caf\xe9"\n')  # latin-1
    with pytest.raises(ConfigError, match=f"cannot read configuration {cfg}: .*(--config|fix the file)"):
        load_settings({}, environ={"HOME": str(tmp_path), "RETRAIND_CONFIG": str(cfg)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-0 file (CI runs unprivileged)")
def test_a_config_file_without_read_permission_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("seed = 1\n")
    cfg.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied; make it a file you can read"):
        load_settings({}, environ={"HOME": str(tmp_path)}, config_file=cfg)
