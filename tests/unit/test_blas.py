from __future__ import annotations

from pathlib import Path

import pytest

from daemon.adapters.podman import run_argv
from daemon.core.config import load_settings
from daemon.core.errors import ConfigError
from handlers.base import blas_env
from handlers.train import check_blas


def test_every_container_gets_the_pinned_openblas_kernel_and_one_thread(tmp_path: Path) -> None:
    s = load_settings(
        {"repo": tmp_path, "data_dir": tmp_path, "state_dir": tmp_path}, environ={"HOME": str(tmp_path)}
    )
    env = blas_env(s)
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env.get("OPENBLAS_CORETYPE") in ("Haswell", None)  # None off x86
    free = load_settings(
        {
            "repo": tmp_path,
            "data_dir": tmp_path,
            "state_dir": tmp_path,
            "blas_coretype": "",
            "blas_threads": 0,
        },
        environ={"HOME": str(tmp_path)},
    )
    assert blas_env(free) == {}


def test_the_env_reaches_podman_run() -> None:
    from daemon.core.jobs import ContainerJob

    argv = run_argv(ContainerJob("n", "img", ("true",), env={"OPENBLAS_NUM_THREADS": "1"}), rootless=True)
    assert "--env=OPENBLAS_NUM_THREADS=1" in argv


def test_a_cpu_without_avx2_is_refused_before_an_illegal_instruction(tmp_path: Path) -> None:
    s = load_settings(
        {"repo": tmp_path, "data_dir": tmp_path, "state_dir": tmp_path}, environ={"HOME": str(tmp_path)}
    )
    check_blas(s, {"machine": "x86_64", "cpu_flags": ["avx", "avx2", "fma", "sse2"]})
    check_blas(s, {"machine": "aarch64", "cpu_flags": ["neon"]})  # not x86: not pinned
    with pytest.raises(ConfigError, match="needs CPU flags avx2, fma"):
        check_blas(s, {"machine": "x86_64", "cpu_flags": ["avx", "sse2"]})
