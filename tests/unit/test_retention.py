from __future__ import annotations

import json
import os
from pathlib import Path

from daemon.adapters.snapshot import SNAPSHOT, write_manifest
from daemon.adapters.store import ObjectStore
from daemon.core.inputs import DataFile, Manifest
from daemon.state.journal import Journal
from daemon.state.retention import PINS, collect, plan_objects, plan_runs, registry_pins


def test_plan_keeps_the_newest_and_every_pinned_run() -> None:
    runs = [f"r{i:02d}" for i in range(30, 0, -1)]  # newest first
    plan = plan_runs(runs, 5, pinned={"r03", "r29"})
    assert plan.keep == ("r30", "r29", "r28", "r27", "r26", "r03")
    assert plan.pinned == ("r03",) and len(plan.collect) == 24 and "r03" not in plan.collect


def test_objects_no_kept_run_needs_go_only_after_the_grace_period() -> None:
    stored = {"a": (1, 100.0), "b": (1, 100.0), "c": (1, 995.0)}
    assert plan_objects(stored, needed={"a"}, now=1000.0, grace_s=60) == ("b",)


def _run(state: Path, run_id: str, content: bytes, store: ObjectStore) -> str:
    src = state.parent / f"{run_id}.csv"
    src.write_bytes(content)
    sha = store.ingest(str(src), os.stat(src))
    run_dir = state / "runs" / run_id
    run_dir.mkdir(parents=True)
    manifest = Manifest((DataFile("d.csv", len(content), sha),))
    store.materialise([("d.csv", sha)], run_dir / SNAPSHOT)
    write_manifest(run_dir, manifest)
    (run_dir / "train").mkdir()
    (run_dir / "train" / "model.pkl").write_bytes(b"m" * 5000)
    return sha


def test_collect_keeps_what_kept_runs_need_and_forgets_cache_entries_of_collected_runs(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    store = ObjectStore(state / "objects")
    journal = Journal.open(state / "journal.db")
    shas = {
        f"2026{i:02d}": _run(state, f"2026{i:02d}", f"data {i % 10}".encode(), store) for i in range(1, 31)
    }
    with journal.transaction() as tx:
        for run_id in shas:
            tx.execute(
                "INSERT INTO stage_cache (stage, key, run_id, summary, outputs, created_at)"
                " VALUES (?, ?, ?, '', '{}', 0)",
                ("train", f"key-{run_id}", run_id),
            )
    done = collect(state, journal, keep_runs=5, grace_s=0, pinned={"202602"}, now=lambda: 1e12)
    left = sorted(p.name for p in (state / "runs").iterdir())
    assert left == ["202602", "202626", "202627", "202628", "202629", "202630"]
    assert len(done.runs) == 24 and done.freed_bytes > 24 * 5000
    # Every kept run's snapshot still resolves; objects only collected runs needed are gone.
    needed = {shas[r] for r in left}
    assert set(store.all_objects()) == needed
    for run_id in left:
        assert (
            state / "runs" / run_id / SNAPSHOT / "d.csv"
        ).read_bytes() == f"data {int(run_id[4:]) % 10}".encode()
    with journal.transaction(write=False) as tx:
        cached = {row[0] for row in tx.execute("SELECT run_id FROM stage_cache")}
    assert cached == set(left)  # no cache entry points at a collected run
    journal.close()


def test_dry_run_removes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = ObjectStore(state / "objects")
    journal = Journal.open(state / "journal.db")
    for i in range(4):
        _run(state, f"r{i}", f"{i}".encode(), store)
    done = collect(state, journal, keep_runs=1, grace_s=0, pinned=set(), dry_run=True, now=lambda: 1e12)
    assert done.runs == ("r2", "r1", "r0") and len(done.objects) == 3
    assert len(list((state / "runs").iterdir())) == 4 and len(store.all_objects()) == 4
    journal.close()


def test_pins_are_remembered_for_when_the_registry_cannot_be_asked(tmp_path: Path) -> None:
    assert registry_pins(tmp_path, lambda: {"r1", "r7"}) == {"r1", "r7"}
    assert json.loads((tmp_path / PINS).read_text()) == ["r1", "r7"]

    def down() -> set[str]:
        raise ConnectionError("MLflow is down")

    assert registry_pins(tmp_path, down) == {"r1", "r7"}
    assert registry_pins(tmp_path, None) == {"r1", "r7"}  # not asked: the remembered pins
    (tmp_path / PINS).unlink()
    assert registry_pins(tmp_path, down) is None
