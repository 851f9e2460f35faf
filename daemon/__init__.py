"""retraind: watch a repository and a data directory, retrain in rootless Podman, record in MLflow."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("retraind")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
