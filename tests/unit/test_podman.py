from __future__ import annotations

from pathlib import Path

from daemon.adapters.podman import build_argv, rm_argv, run_argv, stop_argv
from daemon.core.jobs import BuildJob, ContainerJob, Mount, is_podman_failure


def job(**kw: object) -> ContainerJob:
    base: dict[str, object] = {
        "name": "retraind-r1-train",
        "image": "sha256:abc",
        "argv": ("python", "t.py"),
        "mounts": (Mount(Path("/d"), "/data"), Mount(Path("/o"), "/out", True)),
    }
    base.update(kw)
    return ContainerJob(**base)  # type: ignore[arg-type]


def test_run_is_hardened_and_sealed_by_default() -> None:
    argv = run_argv(job(), rootless=True)
    for flag in (
        "--cap-drop=all",
        "--security-opt=no-new-privileges",
        "--network=none",
        "--read-only",
        "--init",
        "--pull=never",
        "--rm",
        "--userns=keep-id:uid=10001,gid=10001",
        "--label=io.retraind=1",
        "--volume=/d:/data:ro",
        "--volume=/o:/out:rw",
    ):
        assert flag in argv
    assert argv[-3:] == ("sha256:abc", "python", "t.py")


def test_rootful_runs_as_the_image_user_not_root() -> None:
    argv = run_argv(job(), rootless=False)
    assert "--user=10001:10001" in argv and "--userns=keep-id" not in argv


def test_network_and_writable_root_only_when_asked() -> None:
    argv = run_argv(job(network=True, read_only_root=False), rootless=True)
    assert "--network=host" in argv and "--read-only" not in argv


def test_build_is_reproducible_and_never_pulls() -> None:
    argv = build_argv(
        BuildJob(
            Path("/repo"),
            Path("/repo/Containerfile"),
            "localhost/retraind:latest",
            {"BASE_IMAGE": "localhost/base"},
            iidfile=Path("/r/image.id"),
        )
    )
    assert argv[:2] == ("podman", "build")
    assert "--timestamp=0" in argv and "--pull=never" in argv
    assert "--build-arg=BASE_IMAGE=localhost/base" in argv and argv[-1] == "/repo"


def test_podman_own_exit_codes() -> None:
    assert [is_podman_failure(c) for c in (0, 1, 125, 126, 127, 137)] == [
        False,
        False,
        True,
        True,
        True,
        False,
    ]


def test_a_timed_out_container_is_stopped_by_name_then_removed() -> None:
    """Never a SIGKILL of the client: `podman stop -t N NAME`, then `podman rm -f NAME`."""
    assert stop_argv("retraind-r1-train", 10) == (
        "podman",
        "stop",
        "--ignore",
        "--time=10",
        "retraind-r1-train",
    )
    assert rm_argv("retraind-r1-train") == ("podman", "rm", "-f", "--ignore", "retraind-r1-train")
