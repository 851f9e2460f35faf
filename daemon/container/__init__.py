"""Programs retraind runs inside a container, from the image a model was built with: standard library,
the image's packages and daemon.core only (the package is mounted read-only; nothing else of ours)."""
