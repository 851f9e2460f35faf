"""Print, as JSON, the versions of the toolchain inside the image (recorded as run provenance).

With --environment it prints {"versions": ..., "environment": ...}, the second being what the image
holds: its Debian packages, the Python packages of the venv and the npm packages of node_modules,
each as a sorted list so that the same image content always gives the same document. An image
built before --environment existed ignores the flag and prints the versions alone. When the image
ran the Jest suite of scripts/ at build time (the Containerfile does), the document also has
"tests", that run's summary (scripts/jest-report.js), and "stage_contract", what the daemon
may run in it (STAGE_CONTRACT).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "mlflow-skinny")
DPKG_STATUS = Path("/var/lib/dpkg/status")
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"
JEST_SUMMARY = Path("/opt/retraind/tests/jest.json")  # written by the Containerfile's Jest step
# What the image's scripts offer the daemon's stages (handlers/base.py reads it from the build):
# 1 (an image that does not say): check-data.js, preprocess.js and parity.py, each run on its own;
# 2: also gate.js (the data checks, then preprocessing with the parity check, in one process) and
#    preprocess.js --parity (the parity check fed through a pipe as the rows are written).
STAGE_CONTRACT = 2


def versions(node_version: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "node": node_version}
    found.update({name: metadata.version(name) for name in PACKAGES})
    return found


def dpkg_packages(status: str) -> list[dict[str, str]]:
    """The installed packages of a dpkg status file (stanzas of `Field: value`, blank-line separated)."""
    found = []
    for stanza in re.split(r"\n[ \t]*\n", status):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] not in ("", " ", "\t") and ":" in line:  # not a continuation line
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue  # removed, config-files only, half-installed: not what the image runs
        found.append(
            {
                "package": fields["Package"],
                "version": fields.get("Version", ""),
                "architecture": fields.get("Architecture", ""),
            }
        )
    return sorted(found, key=lambda p: (p["package"], p["architecture"]))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def python_packages(paths: Iterable[str]) -> list[dict[str, str]]:
    """Name and version of each distribution on these paths; the first of a name wins, as for import."""
    found: dict[str, dict[str, str]] = {}
    for dist in metadata.distributions(path=list(paths)):
        name = dist.metadata["Name"]
        if name and _canonical(name) not in found:
            found[_canonical(name)] = {"name": name, "version": dist.version}
    return [found[k] for k in sorted(found)]


def npm_packages(root: Path) -> list[dict[str, str]]:
    """Every package under node_modules (scoped @x/y and nested node_modules too), by its package.json."""
    found: list[dict[str, str]] = []

    def visit(modules: Path, prefix: str) -> None:
        for entry in sorted(os.listdir(modules)):
            if entry.startswith("."):  # .bin, .package-lock.json
                continue
            if entry.startswith("@"):
                for scoped in sorted(os.listdir(modules / entry)):
                    package(modules / entry / scoped, f"{prefix}{entry}/{scoped}")
            else:
                package(modules / entry, prefix + entry)

    def package(path: Path, rel: str) -> None:
        manifest = path / "package.json"
        if not manifest.is_file():
            return  # not a package (npm ignores it too)
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        found.append(
            {"name": str(meta.get("name", rel)), "version": str(meta.get("version", "")), "path": rel}
        )
        if (path / "node_modules").is_dir() and not path.is_symlink():
            visit(path / "node_modules", f"{rel}/node_modules/")

    if root.is_dir():
        visit(root, "")
    return sorted(found, key=lambda p: p["path"])


def environment(
    node_version: str, status: str, site_paths: Iterable[str], node_modules: Path
) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "node": node_version,
        "debian": dpkg_packages(status),
        "python_packages": python_packages(site_paths),
        "npm_packages": npm_packages(node_modules),
    }


def main() -> None:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    node_version = node.stdout.strip().lstrip("v")
    if "--environment" not in sys.argv[1:]:
        print(json.dumps(versions(node_version), sort_keys=True))
        return
    site_paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    status = DPKG_STATUS.read_text(encoding="utf-8", errors="replace") if DPKG_STATUS.is_file() else ""
    document: dict[str, Any] = {
        "versions": versions(node_version),
        "environment": environment(node_version, status, site_paths, NODE_MODULES),
    }
    document["stage_contract"] = STAGE_CONTRACT
    if JEST_SUMMARY.is_file():
        document["tests"] = json.loads(JEST_SUMMARY.read_text(encoding="utf-8"))
    print(json.dumps(document, sort_keys=True, separators=(",", ":")))


if __name__ == "__main__":
    main()
