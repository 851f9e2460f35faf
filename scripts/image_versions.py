"""Print, as JSON, the versions of the toolchain inside the image (recorded as run provenance)."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata

PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "mlflow-skinny")


def main() -> None:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    versions = {"python": platform.python_version(), "node": node.stdout.strip().lstrip("v")}
    versions.update({name: metadata.version(name) for name in PACKAGES})
    print(json.dumps(versions, sort_keys=True))


if __name__ == "__main__":
    main()
