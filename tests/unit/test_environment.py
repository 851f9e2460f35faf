"""The environment manifest: parsing what an image holds, its identity, the host blocks, and how the
pipeline carries it from the build stage (fresh or cached) to provenance/environment.json."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.core.environment import SHA256_TAG, content_sha256, environment_document, host_block, host_id
from daemon.core.errors import EXIT_STAGE
from daemon.core.outcome import PipelineOutcome
from daemon.core.params import TrainParams
from daemon.core.records import RunRecord
from daemon.core.stages import Ports, RunContext, StageResult
from daemon.engine.pipeline import run_stages
from handlers.build import STAGE as BUILD
from handlers.registry import STAGES
from tests.fakes import FakeContainers, FakeTracker, MemoryStageCache, RecordingReporter, ok, writes
from tests.unit.test_pipeline import VERSIONS
from tests.unit.test_pipeline import containers as scripted

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import image_versions  # noqa: E402

DPKG_STATUS = """\
Package: nodejs
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 18.19.0+dfsg-6~deb12u2
Description: evented I/O for V8 javascript - runtime executable
 Node.js is a platform built on Chrome's JavaScript runtime.
 Version: 99 (a continuation line that looks like a field)

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: i386
Version: 2.36-9+deb12u9

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: hold ok installed
Multi-Arch: same
Architecture: amd64
Version: 2.36-9+deb12u9
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e1e1e1 obsolete

Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
"""

INTEL = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz
flags\t\t: fpu sse2 avx2 avx fma

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz
flags\t\t: fpu sse2 avx2 avx fma
"""

ARM = "processor\t: 0\nFeatures\t: fp asimd crc32\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4\n"


def host(**override: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "hostname": "ci-1",
        "release": "6.1.0-28-amd64",
        "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1",
        "machine": "x86_64",
        "cpuinfo": INTEL,
        "cpu_count": 2,
    }
    return host_block(**(fields | override))


def test_dpkg_lists_installed_packages_with_version_and_architecture_sorted() -> None:
    found = image_versions.dpkg_packages(DPKG_STATUS)
    assert found == [
        {"package": "libc6", "version": "2.36-9+deb12u9", "architecture": "amd64"},
        {"package": "libc6", "version": "2.36-9+deb12u9", "architecture": "i386"},
        {"package": "nodejs", "version": "18.19.0+dfsg-6~deb12u2", "architecture": "amd64"},
        {"package": "python3", "version": "3.11.2-1+b1", "architecture": "amd64"},
    ]
    reordered = "\n\n".join(reversed(DPKG_STATUS.strip().split("\n\n")))
    assert image_versions.dpkg_packages(reordered) == found
    assert image_versions.dpkg_packages("") == []


def package(root: Path, rel: str, name: str | None, version: str) -> None:
    (root / rel).mkdir(parents=True)
    meta = {"version": version} | ({"name": name} if name else {})
    (root / rel / "package.json").write_text(json.dumps(meta), encoding="utf-8")


def test_npm_walks_scoped_and_nested_node_modules_by_package_json(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    package(modules, "jest", "jest", "29.7.0")
    package(modules, "@babel/core", "@babel/core", "7.26.0")
    package(modules, "@babel/core/node_modules/semver", "semver", "6.3.1")
    package(modules, "semver", "semver", "7.6.3")
    package(modules, "string-width-cjs", "string-width", "4.2.3")  # an npm alias: dir and name differ
    package(modules, "jest/test/fixtures/node_modules/fake", "fake", "0.0.0")  # not a dependency
    (modules / ".bin").mkdir()
    (modules / ".package-lock.json").write_text("{}")
    (modules / "not-a-package").mkdir()
    found = image_versions.npm_packages(modules)
    assert found == [
        {"name": "@babel/core", "version": "7.26.0", "path": "@babel/core"},
        {"name": "semver", "version": "6.3.1", "path": "@babel/core/node_modules/semver"},
        {"name": "jest", "version": "29.7.0", "path": "jest"},
        {"name": "semver", "version": "7.6.3", "path": "semver"},
        {"name": "string-width", "version": "4.2.3", "path": "string-width-cjs"},
    ]
    assert image_versions.npm_packages(tmp_path / "absent") == []


def dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_python_packages_are_named_once_sorted_and_the_first_on_the_path_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "venv", tmp_path / "other"
    dist(first, "scikit-learn", "1.9.1")
    dist(first, "numpy", "2.4.6")
    dist(first, "PyYAML", "6.0.2")
    dist(second, "scikit_learn", "1.0.0")  # shadowed, as import would shadow it
    dist(second, "Zope.Interface", "7.0")
    found = image_versions.python_packages([str(first), str(second)])
    assert found == [
        {"name": "numpy", "version": "2.4.6"},
        {"name": "PyYAML", "version": "6.0.2"},
        {"name": "scikit-learn", "version": "1.9.1"},
        {"name": "Zope.Interface", "version": "7.0"},
    ]


def image_manifest(tmp_path: Path) -> dict[str, Any]:
    modules = tmp_path / "node_modules"
    package(modules, "jest", "jest", "29.7.0")
    dist(tmp_path / "site", "numpy", "2.4.6")
    image: dict[str, Any] = image_versions.environment(
        "18.19.0", DPKG_STATUS, [str(tmp_path / "site")], modules
    )
    return image


def test_the_identity_is_of_the_content_alone_whatever_the_order(tmp_path: Path) -> None:
    image = image_manifest(tmp_path)
    assert image["node"] == "18.19.0" and image["python_packages"] == [{"name": "numpy", "version": "2.4.6"}]
    shuffled = {k: image[k] for k in reversed(list(image))}
    assert content_sha256(shuffled) == content_sha256(json.loads(json.dumps(image)))
    bumped = image | {"npm_packages": [{"name": "jest", "version": "29.7.1", "path": "jest"}]}
    assert content_sha256(bumped) != content_sha256(image)


def test_the_host_block_names_kernel_cpu_model_flags_and_count() -> None:
    block = host()
    assert block == {
        "hostname": "ci-1",
        "kernel_release": "6.1.0-28-amd64",
        "kernel_version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1",
        "machine": "x86_64",
        "cpu_model": "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz",
        "cpu_count": 2,
        "cpu_flags": ["avx", "avx2", "fma", "fpu", "sse2"],
    }
    arm = host(machine="aarch64", cpuinfo=ARM)
    assert (arm["cpu_model"], arm["cpu_flags"]) == ("BCM2835", ["asimd", "crc32", "fp"])
    assert host(cpuinfo="")["cpu_model"] == "unknown"
    assert host_id(block) == host_id(host()) and host_id(block).startswith("ci-1-")
    assert host_id(host(release="6.1.0-30-amd64")) != host_id(block)  # same name, new kernel


def result(stage: str, cached_from: str = "", **outputs: Any) -> StageResult:
    return StageResult(stage, "", outputs, cached_from=cached_from)


def test_each_stage_names_the_host_that_ran_it_and_reused_ones_name_their_run() -> None:
    builder, here = host(hostname="builder"), host(hostname="here")
    image = {"python": "3.11.2", "node": "18.19.0"}
    results = {
        "build": result(
            "build", "r0", image_id="sha256:i", environment=image, environment_sha256="e", host=builder
        ),
        "validate": result("validate", "r0"),
        "preprocess": result("preprocess"),
        "train": result("train"),
    }
    doc = environment_document(results, here, "register")
    assert doc is not None and (doc["sha256"], doc["image"], doc["image_id"]) == ("e", image, "sha256:i")
    assert doc["hosts"] == {host_id(builder): builder, host_id(here): here}
    assert doc["stages"] == {
        "build": host_id(builder),
        "preprocess": host_id(here),
        "train": host_id(here),
        "register": host_id(here),
    }
    assert doc["reused"] == {"validate": "r0"}
    assert environment_document({}, here, "build") is None
    no_manifest = result("build", image_id="sha256:i", environment=None, host=builder)
    assert environment_document({"build": no_manifest}, here, "validate") is None


# ---- through the pipeline, with the image answering --environment ---------------------------------

IMAGE = {
    "python": "3.11.2",
    "node": "18.19.0",
    "debian": image_versions.dpkg_packages(DPKG_STATUS),
    "python_packages": [{"name": "scikit-learn", "version": "1.9.1"}],
    "npm_packages": [{"name": "jest", "version": "29.7.0", "path": "jest"}],
}


def inspected(image: dict[str, Any]) -> Any:
    printed = json.dumps({"versions": VERSIONS, "environment": image})
    return lambda job: ok(job, printed) if "--environment" in job.argv else ok(job, json.dumps(VERSIONS))


def containers(image: dict[str, Any] = IMAGE, /, **override: Any) -> FakeContainers:
    return scripted(**({"build-versions": inspected(image)} | override))


def run(
    ctx: RunContext, run_id: str, fake: FakeContainers, cache: MemoryStageCache
) -> tuple[PipelineOutcome, RunRecord]:
    tracker = FakeTracker()
    ctx = replace(ctx, run_id=run_id, run_dir=ctx.run_dir.parent / run_id)
    outcome = run_stages(ctx, list(STAGES.values()), Ports(fake, tracker, cache=cache), RecordingReporter())
    (record,) = tracker.records
    return outcome, record


def logged(record: RunRecord) -> dict[str, Any]:
    """provenance/environment.json as the tracker would upload it."""
    found: dict[str, Any] = json.loads((record.artifact_dirs["provenance"] / "environment.json").read_text())
    return found


def test_every_registered_run_logs_the_manifest_and_tags_its_identity(ctx: RunContext) -> None:
    outcome, record = run(ctx, "r1", containers(), MemoryStageCache())
    env = logged(record)
    assert env["image"] == IMAGE and env["sha256"] == content_sha256(IMAGE) == record.tags[SHA256_TAG]
    assert set(env["stages"]) == set(STAGES) and len(env["hosts"]) == 1 and env["reused"] == {}
    assert outcome.results["build"].outputs["versions"] == VERSIONS  # unchanged for its readers
    assert record.tags["retraind.version.node"] == "18.19.0"


def test_a_run_rejected_by_the_gate_still_logs_the_environment_it_was_checked_in(ctx: RunContext) -> None:
    rejected = containers(**{"validate-data": writes("data-check.json", {"problems": [{"message": "x"}]}, 1)})
    outcome, record = run(ctx, "r1", rejected, MemoryStageCache())
    assert outcome.failed_stage == "validate" and record.status == "FAILED"
    env = logged(record)
    assert env["sha256"] == record.tags[SHA256_TAG] and set(env["stages"]) == {"build", "validate"}


def test_a_failed_build_logs_no_environment(ctx: RunContext) -> None:
    fake = containers()
    fake.build_result = replace(fake.build_result, returncode=1)
    _, record = run(ctx, "r1", fake, MemoryStageCache())
    assert not (record.artifact_dirs["provenance"] / "environment.json").exists()
    assert SHA256_TAG not in record.tags


def test_a_cached_build_carries_its_manifest_and_builder_into_later_runs(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    first, _ = run(ctx, "r1", containers(), cache)
    again = containers(IMAGE | {"node": "changed: the image would have to be inspected again"})
    again.images["localhost/retraind:latest"] = "sha256:" + "b" * 64
    outcome, record = run(replace(ctx, params=TrainParams(c=0.5)), "r2", again, cache)
    assert outcome.results["build"].cached_from == "r1" and not again.built
    assert not any(job.name.endswith("-build-versions") for job in again.ran)
    env = logged(record)
    assert env["image"] == IMAGE and record.tags[SHA256_TAG] == content_sha256(IMAGE)
    assert env["reused"] == {"validate": "r1", "preprocess": "r1"}
    assert env["stages"]["build"] == host_id(first.results["build"].outputs["host"])
    assert set(env["stages"]) == {"build", "train", "register"}


def test_a_build_cached_before_the_manifest_or_the_contract_existed_is_rebuilt_to_collect_them() -> None:
    fake = containers()
    fake.images["localhost/retraind:latest"] = image_id = "sha256:" + "b" * 64
    ports = Ports(fake, FakeTracker())
    assert not BUILD.reusable({"image_id": image_id, "versions": VERSIONS}, ports)
    assert not BUILD.reusable({"image_id": image_id, "environment": None}, ports)
    assert BUILD.reusable({"image_id": image_id, "environment": None, "contract": 1}, ports)


def test_an_image_older_than_the_manifest_builds_and_registers_without_one(ctx: RunContext) -> None:
    old = containers(**{"build-versions": lambda job: ok(job, json.dumps(VERSIONS))})  # ignores the flag
    outcome, record = run(ctx, "r1", old, MemoryStageCache())
    assert outcome.ok and outcome.results["build"].outputs["versions"] == VERSIONS
    assert outcome.results["build"].outputs["environment"] is None
    assert SHA256_TAG not in record.tags
    assert not (record.artifact_dirs["provenance"] / "environment.json").exists()


def test_an_image_printing_no_json_fails_the_build_stage_saying_so(ctx: RunContext) -> None:
    garbled = containers(**{"build-versions": lambda job: ok(job, "Traceback (most recent call last)")})
    outcome, _ = run(ctx, "r1", garbled, MemoryStageCache())
    assert outcome.exit_code == EXIT_STAGE and outcome.failed_stage == "build"
    assert "printed no JSON" in str(outcome.error)


def test_environment_diff_names_each_package_that_differs() -> None:
    from daemon.core.environment import environment_diff

    then = {
        "python": "3.11.2",
        "node": "18.20.4",
        "debian": [
            {"package": "libc6", "version": "2.36-9+deb12u7"},
            {"package": "tzdata", "version": "2024a"},
        ],
        "python_packages": [{"name": "numpy", "version": "2.4.6"}],
        "npm_packages": [{"name": "jest", "version": "29.7.0", "path": "jest"}],
    }
    now = {
        **then,
        "debian": [{"package": "libc6", "version": "2.36-9+deb12u9"}, {"package": "curl", "version": "7.88"}],
    }
    assert environment_diff(then, then) == []
    assert environment_diff(then, now) == [
        "Debian curl 7.88 only now",
        "Debian libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9",
        "Debian tzdata 2024a only then",
    ]
    many = {**then, "debian": [{"package": f"p{i:03d}", "version": "1"} for i in range(50)]}
    shown = environment_diff(then, many, limit=10)
    assert len(shown) == 11 and shown[-1] == "... and 42 more differences"
