"""Commands: one module per CLI command that is more than a call into daemon.app (status, doctor,
install-service, base, models, reproduce). daemon.cli parses and dispatches."""
