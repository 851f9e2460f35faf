"""`retraind notify test`: one test message to every configured target, now, not through the outbox;
`retraind notify list`: the targets (secrets redacted) and what waits in the journal."""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from typing import Any

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_INFRA, EXIT_OK, ConfigError


def add_parser(sub: Any) -> None:
    p = command(sub, "notify", main, help="test the notification targets, or list them")
    p.add_argument("action", choices=("test", "list"), help="test: send a test message to each target")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.notifyfile import load_targets, notify_file
    from daemon.adapters.webhooks import HttpSender
    from daemon.core.notify import TEST, Notice, Redactor

    settings = settings_of(args)
    targets = load_targets(settings)
    if args.action == "list":
        return _list(settings, targets, json_lines)
    if not targets:
        raise ConfigError(
            f"no notification targets: set RETRAIND_NOTIFY_WEBHOOK_URL, or add [[targets]] to "
            f"{notify_file(settings, os.environ)} (chmod 600); see README, Notifications"
        )
    redact = Redactor(s for t in targets for s in t.secrets)
    sender = HttpSender(settings.notify_timeout_s)
    notice = Notice(
        TEST, f"test-{int(time.time())}", "test", trigger="manual", host=socket.gethostname(),
        reasons=("sent by `retraind notify test`: if you read this, the target works",), at=time.time(),
    )  # fmt: skip
    failed = 0
    for target in targets:
        try:
            code = sender.send(target, notice)
            result = {"target": target.shown, "ok": True, "detail": f"HTTP {code}"}
        except Exception as e:  # DeliveryError, or a payload bug: report it, test the others
            failed += 1
            result = {"target": target.shown, "ok": False, "detail": redact(str(e))}
        mark = "ok" if result["ok"] else "FAILED"
        print(json.dumps(result) if json_lines else f"{mark}  {target.shown}: {result['detail']}")
    return EXIT_INFRA if failed else EXIT_OK


def _list(settings: Any, targets: list[Any], json_lines: bool) -> int:
    from daemon.state.journal import Journal
    from daemon.state.notifications import Notifications

    journal = Journal.open(settings.state_dir / "journal.db")
    try:
        backlog = Notifications(journal).backlog()
    finally:
        journal.close()
    rows = [{"target": t.shown, "kind": t.kind, "events": list(t.events)} for t in targets]
    if json_lines:
        print(json.dumps({"targets": rows, "waiting": backlog.waiting, "dropped": backlog.dropped}))
        return EXIT_OK
    for row in rows:
        print(f"{row['target']}: {', '.join(row['events'])}")
    if not rows:
        print("no notification targets configured")
    print(f"waiting: {backlog.waiting}, given up: {backlog.dropped}")
    return EXIT_OK
