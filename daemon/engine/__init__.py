"""Engine: the stage runner, the worker that runs one pipeline, the service loop (debounce, queue,
recovery) and the reporters that record a run (journal, metrics, console). Imports the stages
(handlers), the state, the adapters and the core; the composition root (daemon.app) wires it."""
