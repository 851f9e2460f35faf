"""Core: the values and policies every other layer shares (settings, errors, the stage protocol,
jobs, records, debounce, the run queue, cache keys, promotion). Imports nothing else of ours."""
