"""The words runs are recorded in, defined once: the journal stores them, the metrics label with
them, the dashboards and alert rules query them, `retraind status` shows them."""

from __future__ import annotations

# How a run ended. "interrupted" is only ever set at the next start, for a run a crash left
# running; a run that returns ends as one of RETURNED.
SUCCEEDED, UP_TO_DATE, GATE_REJECTED, CANCELLED, FAILED, INTERRUPTED = (
    "succeeded",
    "up_to_date",
    "gate_rejected",
    "cancelled",
    "failed",
    "interrupted",
)
RETURNED = (SUCCEEDED, FAILED, GATE_REJECTED, CANCELLED, UP_TO_DATE)
RUN_STATUSES = (SUCCEEDED, FAILED, GATE_REJECTED, CANCELLED, INTERRUPTED, UP_TO_DATE)  # this order: the
# journal's first migration lists them in its CHECK, and a migration's text never changes

# How a stage ended, in the metrics (the journal stores a failed stage's error kind instead).
STAGE_SUCCESS, STAGE_FAILURE, STAGE_CANCELLED = "success", "failure", "cancelled"
STAGE_CACHE_HIT = "cache_hit"
STAGE_OUTCOMES = (STAGE_SUCCESS, STAGE_FAILURE, STAGE_CANCELLED, STAGE_CACHE_HIT)

# What starts a run. The daemon's come from its causes (when one event carries several, the first
# of these names it); "ci" is only a flag of a one-shot `retraind run`.
DAEMON_TRIGGERS = ("commit", "data", "manual", "schedule", "rescan")
TRIGGERS = (*DAEMON_TRIGGERS, "ci")

# Where the stages' containers run (Settings.executor): podman on this machine, or one Slurm job each.
LOCAL, SLURM = "local", "slurm"
EXECUTORS = (LOCAL, SLURM)
