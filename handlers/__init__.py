"""Pipeline stages: one module per stage, listed in handlers.registry."""
