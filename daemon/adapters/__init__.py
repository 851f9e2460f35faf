"""Adapters: the outside world behind small classes and functions (subprocesses, podman, git,
watchdog, MLflow, systemd, the control socket, the object store and data snapshots, logging).
Import the core only, and each other."""
