"""The stage cache: each stage's successful result under its input key, kept in the state journal."""

from __future__ import annotations

import json

from daemon.core.stages import CacheEntry, StageResult
from daemon.state.journal import Journal


class JournalStageCache:
    """The real `StageCache`. The newest success for a key wins; entries are never edited."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def lookup(self, stage: str, key: str) -> CacheEntry | None:
        with self.journal.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT run_id, summary, outputs FROM stage_cache WHERE stage = ? AND key = ?", (stage, key)
            ).fetchone()
        return None if row is None else CacheEntry(str(row[0]), str(row[1]), json.loads(row[2]))

    def store(self, stage: str, key: str, run_id: str, result: StageResult) -> None:
        outputs = json.dumps(dict(result.outputs), sort_keys=True)
        with self.journal.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO stage_cache (stage, key, run_id, summary, outputs, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (stage, key, run_id, result.summary, outputs, self.journal.now()),
            )
