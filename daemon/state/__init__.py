"""State: what the daemon keeps between runs and restarts (the journal and its schema, the stage
cache, the MLflow outbox, retention). Imports the core and the adapters."""
