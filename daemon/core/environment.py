"""The environment manifest: what the image holds (its identity) and the hosts that ran each stage."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

SCHEMA = 1
SHA256_TAG = "retraind.environment.sha256"
CPU_MODEL_KEYS = ("model name", "Hardware", "Model")  # x86 names it first; some ARM kernels only these


class HasOutputs(Protocol):
    @property
    def outputs(self) -> Mapping[str, Any]: ...
    @property
    def cached_from(self) -> str: ...


def content_sha256(image: Mapping[str, Any]) -> str:
    """The environment's identity: a hash of the image's content alone (never the host's)."""
    canonical = json.dumps(image, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cpuinfo_fields(cpuinfo: str) -> dict[str, str]:
    """The first value of each key of /proc/cpuinfo (the first processor's, for per-CPU keys)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def host_block(
    *, hostname: str, release: str, version: str, machine: str, cpuinfo: str, cpu_count: int | None
) -> dict[str, Any]:
    """One machine as a stage saw it: kernel, architecture, CPU model and flags, CPU count."""
    fields = cpuinfo_fields(cpuinfo)
    model = next((fields[k] for k in CPU_MODEL_KEYS if fields.get(k)), "unknown")
    flags = fields.get("flags") or fields.get("Features") or ""
    return {
        "hostname": hostname,
        "kernel_release": release,
        "kernel_version": version,
        "machine": machine,
        "cpu_model": model,
        "cpu_count": cpu_count,
        "cpu_flags": sorted(set(flags.split())),  # SIMD support picks numeric code paths at run time
    }


def this_host(proc: Path = Path("/proc")) -> dict[str, Any]:
    """The machine this process runs on (the stages' containers share its kernel and CPUs)."""
    try:
        cpuinfo = (proc / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    return host_block(
        hostname=platform.node(),
        release=platform.release(),
        version=platform.version(),
        machine=platform.machine(),
        cpuinfo=cpuinfo,
        cpu_count=os.cpu_count(),
    )


def host_id(block: Mapping[str, Any]) -> str:
    """Readable and distinct: the hostname, and a hash that changes with anything else (a new kernel)."""
    return f"{block['hostname']}-{content_sha256(block)[:8]}"


def environment_document(
    results: Mapping[str, HasOutputs], current: Mapping[str, Any], running: str
) -> dict[str, Any] | None:
    """provenance/environment.json: the build's image manifest, and which host ran which stage.

    A stage whose outputs carry a `host` block ran there (build records its own, so a cached build
    names the machine that built it); one that ran in this run ran on `current`, as does `running`
    (the register stage, or the stage that failed); one reused from an earlier run is listed under
    `reused` with that run, whose own manifest names its host. None when the build stage did not
    finish or its image predates the manifest.
    """
    build = results.get("build")
    image = build.outputs.get("environment") if build is not None else None
    if build is None or not image:
        return None
    hosts: dict[str, Any] = {}
    stages: dict[str, str] = {}
    reused: dict[str, str] = {}
    for name, result in [*results.items(), (running, None)]:
        block = result.outputs.get("host") if result is not None else None
        if not block and result is not None and result.cached_from:
            reused[name] = result.cached_from
            continue
        block = block or current
        hosts[host_id(block)] = dict(block)
        stages[name] = host_id(block)
    return {
        "schema": SCHEMA,
        "sha256": build.outputs["environment_sha256"],
        "image_id": build.outputs["image_id"],
        "image": image,
        "hosts": dict(sorted(hosts.items())),
        "stages": stages,
        "reused": reused,
    }


# (section of the image manifest, what a person calls it, the key that names an entry)
_SECTIONS = (
    ("debian", "Debian", "package"),
    ("python_packages", "Python", "name"),
    ("npm_packages", "npm", "path"),
)


def environment_diff(recorded: Mapping[str, Any], now: Mapping[str, Any], limit: int = 40) -> list[str]:
    """How two image manifests (`image` of environment.json) differ, one line a package:
    "Debian libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9", "Python numpy 2.4.6 only then", ...; at most
    `limit` lines, then how many more. [] when the contents are the same."""
    lines: list[str] = []
    for field in ("python", "node"):
        if recorded.get(field) != now.get(field):
            lines.append(f"{field} {recorded.get(field, '?')} -> {now.get(field, '?')}")
    for section, label, key in _SECTIONS:
        then = {str(p.get(key)): str(p.get("version", "")) for p in recorded.get(section, [])}
        current = {str(p.get(key)): str(p.get("version", "")) for p in now.get(section, [])}
        for name in sorted(then.keys() | current.keys()):
            if name not in current:
                lines.append(f"{label} {name} {then[name]} only then")
            elif name not in then:
                lines.append(f"{label} {name} {current[name]} only now")
            elif then[name] != current[name]:
                lines.append(f"{label} {name} {then[name]} -> {current[name]}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more differences"]
    return lines
