"""A portable base for real: exported from one Podman store, imported into another (a second store of
the same user: its own graphroot and runroot), both stores build the same pipeline image ID and train
the same model from the same commit and data; a runner pinned to another base refuses to build; a
store with a base of its own, built locally, reproduces a run and lists how the images differ."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import run_cli as retraind

pytestmark = pytest.mark.podman


def second_store(tmp: Path) -> dict[str, str]:
    """The environment that points podman at a store of its own under tmp. Root reads
    CONTAINERS_STORAGE_CONF; rootless podman 4.3 ignores that file's graphroot and keeps its store
    and run state under XDG_DATA_HOME and XDG_RUNTIME_DIR, so those move instead."""
    if os.geteuid() == 0:
        conf = tmp / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp / "graph"}"\nrunroot = "{tmp / "run"}"\n'
        )
        return {"CONTAINERS_STORAGE_CONF": str(conf)}
    for part in ("graph", "run"):
        (tmp / part).mkdir(mode=0o700)
    return {"XDG_DATA_HOME": str(tmp / "graph"), "XDG_RUNTIME_DIR": str(tmp / "run")}


def images(env: dict[str, str]) -> set[str]:
    listed = subprocess.run(
        ["podman", "images", "--format={{.Repository}}:{{.Tag}}"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(listed.stdout.split())


def remove_store(tmp: Path, env: dict[str, str]) -> None:
    """Delete a second store's files. Never `podman system reset`: pointed at the wrong store, it
    empties the user's own. The files belong to subordinate IDs: remove them in podman's namespace."""
    for part in ("graph", "run"):
        subprocess.run(
            ["podman", "unshare", "rm", "-rf", str(tmp / part)], env={**os.environ, **env}, check=False
        )


@pytest.fixture(scope="module")
def other_store(tmp_path_factory: pytest.TempPathFactory, podman_ready: None) -> Iterator[dict[str, str]]:
    """The environment that points podman at a second, empty store."""
    tmp = tmp_path_factory.mktemp("store-b")
    env = second_store(tmp)
    assert images(env) == set(), "the second store is not empty: podman ignored the settings"
    yield env
    remove_store(tmp, env)


def test_the_base_travels_as_one_archive_and_both_stores_build_and_train_the_same(
    tmp_path: Path, other_store: dict[str, str]
) -> None:
    archive = tmp_path / "base.tar"
    code, lines, output = retraind("base", "export", "--json", str(archive))
    assert code == 0, output
    (sent,) = [e for e in lines if "sha256" in e]  # a warning line (state directory mode) may come first
    code, (got,), output = retraind(
        "base", "import", "--json", str(archive), "--sha256", sent["sha256"], env=other_store
    )
    assert code == 0, output
    assert got["image_id"] == sent["image_id"]  # podman save / load keep the ID
    pinned = {**other_store, "RETRAIND_BASE_IMAGE_ID": sent["image_id"]}
    code, (verified,), output = retraind("base", "verify", "--json", env=pinned)
    assert code == 0 and verified["ok"], output

    repo = committed_copy(tmp_path / "repo")
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    finished = []
    for name, env in (("a", {}), ("b", pinned)):
        flags = ["--repo", str(repo), "--data-dir", str(data), "--state-dir", str(tmp_path / f"state-{name}")]
        code, lines, output = retraind("run", "--json", *flags, env=env)
        assert code == 0, output[-3000:]
        finished.append(next(e for e in lines if e.get("event") == "run_finished"))
    a, b = finished
    assert a["image_id"] == b["image_id"], (a["image_id"], b["image_id"])
    models = [
        json.loads(
            (
                tmp_path / f"state-{n}" / "runs" / f["run_id"] / "train" / "artifacts" / "identity.json"
            ).read_text()
        )
        for n, f in (("a", a), ("b", b))
    ]
    assert models[0] == models[1] and len(models[0]["model_sha256"]) == 64


def test_a_runner_pinned_to_another_base_refuses_to_build(tmp_path: Path, podman_ready: None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    flags = [
        "--repo",
        str(committed_copy(tmp_path / "repo")),
        "--data-dir",
        str(data),
        "--state-dir",
        str(tmp_path / "s"),
    ]
    code, lines, output = retraind(
        "run", "--json", *flags, env={"RETRAIND_BASE_IMAGE_ID": "0123456789ab" * 2}
    )
    assert code == 78 and "Traceback" not in output, output[-3000:]
    finished = next(e for e in lines if e.get("event") == "run_finished")
    assert (
        "base_image_id pins 0123456789ab" in finished["error"] and "retraind base import" in finished["error"]
    )
    code, (verified,), _ = retraind(
        "base", "verify", "--json", env={"RETRAIND_BASE_IMAGE_ID": "0123456789ab" * 2}
    )
    assert code == 78 and not verified["ok"]


def test_reproduce_on_another_locally_built_base_lists_the_package_differences(
    tmp_path: Path, podman_ready: None
) -> None:
    """Store C builds its own base, without Debian's security updates (as a machine whose mirror lags
    would): reproducing store A's run there explains the other image package by package."""
    store_c = second_store(tmp_path)
    assert images(store_c) == set(), "the third store is not empty: podman ignored the settings"
    try:
        data = tmp_path / "data"
        data.mkdir()
        (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
        flags = ["--repo", str(committed_copy(tmp_path / "repo")), "--data-dir", str(data)]
        flags += ["--state-dir", str(tmp_path / "state")]
        code, lines, output = retraind("run", "--json", *flags)  # store A, the usual base
        assert code == 0, output[-3000:]
        run_id = next(e for e in lines if e.get("event") == "run_finished")["run_id"]

        env = {
            **os.environ,
            **store_c,
            "RETRAIND_DEBIAN_SECURITY_MIRROR": "",
            "XDG_STATE_HOME": str(tmp_path),
        }
        built = subprocess.run(
            ["bash", str(ROOT / "tools/base-image.sh")], env=env, capture_output=True, text=True, timeout=900
        )
        assert built.returncode == 0, built.stderr[-3000:]

        code, lines, output = retraind("reproduce", "--json", *flags, run_id, env=store_c)
        verdict = lines[-1]
        assert code in (0, 1) and "verdict" in verdict, output[-3000:]
        assert verdict["verdict"] in ("identical", "equivalent") or verdict["differences"], (
            verdict
        )  # never bare
        notes = verdict["notes"]
        assert any("differs from the recorded" in n for n in notes), notes
        assert any(n.startswith("  Debian ") or n.startswith("  node ") for n in notes), notes
    finally:
        remove_store(tmp_path, store_c)
