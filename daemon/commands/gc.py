"""`retraind gc`: retention by hand (the daemon runs it after every run)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_OK


def add_parser(sub: Any) -> None:
    p = command(
        sub,
        "gc",
        main,
        help="remove old run directories and data objects (keep_runs; champion, challenger and cache kept)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.app import collect_garbage
    from daemon.state.journal import Journal

    settings = settings_of(args)
    journal = Journal.open(settings.state_dir / "journal.db")
    try:
        done = collect_garbage(settings, journal, dry_run=args.dry_run)
    finally:
        journal.close()
    fields = {
        "dry_run": done.dry_run,
        "runs_removed": list(done.runs),
        "objects_removed": len(done.objects),
        "freed_bytes": done.freed_bytes,
        "pinned": list(done.pinned),
    }
    if json_lines:
        print(json.dumps(fields))
    else:
        verb = "would remove" if done.dry_run else "removed"
        print(
            f"{verb} {len(done.runs)} run directories and {len(done.objects)} data objects, "
            f"{done.freed_bytes / 1e6:,.1f} MB (keep_runs {settings.keep_runs}; "
            f"{len(done.pinned)} older runs kept for the champion, challenger or a pending registration)"
        )
    return EXIT_OK
