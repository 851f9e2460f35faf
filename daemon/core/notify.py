"""Notifications, as values: which outcomes a run produces, who hears of which, and what the
message says (`Notice`); the targets people configure (`Target`) and how their secrets are kept
out of every line retraind prints. Delivery is daemon/engine/courier.py's, the HTTP shapes
daemon/adapters/webhooks.py's."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from daemon.core.errors import ConfigError

# What a person can be told of. A run produces at most two (recovered plus its own).
GATE_REJECTED, STAGE_FAILED, INFRA_FAILED = "gate_rejected", "stage_failed", "infrastructure_failed"
RECOVERED, NEW_CHAMPION, CHALLENGER = "recovered", "new_champion", "challenger"
TRACKING_DELIVERED, TEST = "tracking_delivered", "test"
EVENTS = (GATE_REJECTED, STAGE_FAILED, INFRA_FAILED, RECOVERED, NEW_CHAMPION, CHALLENGER, TRACKING_DELIVERED)
FAILURES = (GATE_REJECTED, STAGE_FAILED, INFRA_FAILED)
DEFAULT_EVENTS = (*FAILURES, RECOVERED, NEW_CHAMPION)  # failures and champion changes
# A commit status says how the commit's run ended, whatever the outcome.
STATUS_EVENTS = (*FAILURES, NEW_CHAMPION, CHALLENGER, TRACKING_DELIVERED)

SLACK, WEBHOOK, GITEA, GITLAB = "slack", "webhook", "gitea", "gitlab"
KINDS = (SLACK, WEBHOOK, GITEA, GITLAB)
COMMIT_STATUS_KINDS = (GITEA, GITLAB)

# Delivery: capped exponential backoff with full jitter, given up after MAX_AGE_S.
BACKOFF_FIRST_S, BACKOFF_MAX_S, MAX_AGE_S = 2.0, 900.0, 24 * 3600.0


def backoff_s(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before attempt `attempts + 1`: uniform in [0, min(cap, first * 2^(attempts-1))],
    at least one second (full jitter: receivers that come back are not hit by every sender at once)."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1))
    return max(1.0, (rng or random).uniform(0.0, ceiling))


@dataclass(frozen=True)
class Target:
    """One place notifications go. `url` and `secret` are secrets: never printed (see `shown`)."""

    name: str
    kind: str  # one of KINDS
    url: str = field(repr=False)  # the webhook, or the API base of a Gitea/Forgejo or GitLab server
    events: tuple[str, ...] = DEFAULT_EVENTS
    secret: str = field(default="", repr=False)  # the HMAC key (webhook) or API token (gitea, gitlab)
    repo: str = ""  # gitea: owner/name; gitlab: the project's ID or path
    context: str = "retraind"  # the commit status's context (gitea) or name (gitlab)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.url, self.secret) if s)

    @property
    def shown(self) -> str:
        """How status and doctor name it: the kind, the host, never the path (Slack's holds the token)."""
        where = urlsplit(self.url)
        repo = f" {self.repo}" if self.repo else ""
        return f"{self.name} ({self.kind} {where.scheme}://{where.hostname or '?'}/…{repo})"

    def wants(self, notice: Notice) -> bool:
        if notice.event == TEST or notice.event in self.events:
            return True
        return notice.recovered and RECOVERED in self.events


def _event_list(value: Any, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    items = [value] if isinstance(value, str) else list(value)
    if items == ["all"]:
        return EVENTS
    unknown = sorted(set(map(str, items)) - set(EVENTS))
    if unknown:
        raise ConfigError(f"{where}: unknown event(s) {', '.join(unknown)}; known: all, {', '.join(EVENTS)}")
    return tuple(str(i) for i in items)


TARGET_KEYS = ("name", "kind", "url", "events", "secret", "token", "repo", "project", "context")


def target_from(entry: Mapping[str, Any], where: str, index: int) -> Target:
    """One [[targets]] table of the notify file; every problem a ConfigError saying what to change."""
    at = f"{where}: targets[{index}]"
    unknown = sorted(set(entry) - set(TARGET_KEYS))
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TARGET_KEYS)}")
    kind = str(entry.get("kind", ""))
    if kind not in KINDS:
        raise ConfigError(f"{at}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    url = str(entry.get("url", ""))
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(f"{at} ({kind}): url must be an http(s) URL")  # never echo it: it is a secret
    secret = str(entry.get("secret") or entry.get("token") or "")
    repo = str(entry.get("repo") or entry.get("project") or "")
    if kind in COMMIT_STATUS_KINDS and not (secret and repo):
        what = 'repo = "owner/name"' if kind == GITEA else 'project = ID or "group/name"'
        raise ConfigError(f'{at} ({kind}): a commit status needs token = "..." and {what}')
    default = STATUS_EVENTS if kind in COMMIT_STATUS_KINDS else DEFAULT_EVENTS
    return Target(
        name=str(entry.get("name") or f"{kind}-{index + 1}"),
        kind=kind,
        url=url,
        events=_event_list(entry.get("events"), at, default),
        secret=secret,
        repo=repo,
        context=str(entry.get("context") or "retraind"),
    )


def targets_from(document: Mapping[str, Any], where: str) -> list[Target]:
    unknown = sorted(set(document) - {"targets"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; the file holds [[targets]] tables")
    entries = document.get("targets", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(f"{where}: targets must be [[targets]] tables")
    found = [target_from(e, where, i) for i, e in enumerate(entries)]
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: target names must differ, got {', '.join(names)}")
    return found


ENV_WEBHOOK, ENV_WEBHOOK_SECRET, ENV_SLACK = (
    "RETRAIND_NOTIFY_WEBHOOK_URL",
    "RETRAIND_NOTIFY_WEBHOOK_SECRET",
    "RETRAIND_NOTIFY_SLACK_URL",
)


def targets_from_env(environ: Mapping[str, str]) -> list[Target]:
    """The simplest set-up: one variable, a generic JSON webhook with the default events."""
    found = []
    for variable, kind, name in ((ENV_WEBHOOK, WEBHOOK, "webhook"), (ENV_SLACK, SLACK, "slack")):
        if url := environ.get(variable, "").strip():
            entry = {"kind": kind, "url": url, "name": f"env-{name}"}
            if kind == WEBHOOK and environ.get(ENV_WEBHOOK_SECRET):
                entry["secret"] = environ[ENV_WEBHOOK_SECRET]
            found.append(target_from(entry, variable, 0))
    return found


class Redactor:
    """Takes every configured secret out of a text: the URLs (whole, and the path that holds a
    Slack token), tokens and HMAC keys."""

    def __init__(self, secrets: Iterable[str]) -> None:
        pieces: set[str] = set()
        for s in secrets:
            if len(s) < 4:
                continue
            pieces.add(s)
            parts = urlsplit(s)
            if parts.scheme and parts.path.strip("/"):
                pieces.add(parts.path + (f"?{parts.query}" if parts.query else ""))
            if parts.query:
                pieces.add(parts.query)
        self.pieces = sorted(pieces, key=len, reverse=True)  # the whole URL before its path

    def __call__(self, text: str) -> str:
        for piece in self.pieces:
            text = text.replace(piece, "[redacted]")
        return text


@dataclass(frozen=True)
class DataChange:
    """The drop against the data of the last run that succeeded."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rows: int | None = None  # rows that passed the data checks (None: not known)
    compared: bool = False  # False: no earlier accepted drop to compare with

    @property
    def line(self) -> str:
        def names(kind: str, items: tuple[str, ...]) -> str:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            return f"{len(items)} {kind} ({shown})"

        parts = [names(k, v) for k, v in (("added", self.added), ("changed", self.changed),
                                          ("removed", self.removed)) if v]  # fmt: skip
        if not self.compared:
            parts = ["first accepted drop" if not parts else "no earlier accepted drop"]
        elif not parts:
            parts = ["unchanged"]
        rows = f"; {self.rows:,} rows" if self.rows is not None else ""
        return "data: " + ", ".join(parts) + rows


def data_change(
    previous: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]], rows: int | None
) -> DataChange:
    """Files added, changed (content) and removed between two manifests' file lists."""
    now = {str(f["name"]): str(f["sha256"]) for f in current}
    if previous is None:
        return DataChange(added=tuple(sorted(now)), rows=rows)
    before = {str(f["name"]): str(f["sha256"]) for f in previous}
    return DataChange(
        added=tuple(sorted(set(now) - set(before))),
        changed=tuple(sorted(n for n in set(now) & set(before) if now[n] != before[n])),
        removed=tuple(sorted(set(before) - set(now))),
        rows=rows,
        compared=True,
    )


TITLES = {
    GATE_REJECTED: "data gate rejected the drop",
    STAGE_FAILED: "a stage failed",
    INFRA_FAILED: "infrastructure failed",
    RECOVERED: "recovered: a run succeeded after a failure",
    NEW_CHAMPION: "new champion",
    CHALLENGER: "challenger: not better than the champion",
    TRACKING_DELIVERED: "registration delivered to MLflow from the backlog",
    TEST: "test notification",
}


@dataclass(frozen=True)
class Notice:
    """What one notification says: the facts a person needs, as JSON-able values."""

    event: str
    run_id: str
    status: str  # the run's (daemon/core/vocab.py), or "test"
    trigger: str = ""
    commit: str | None = None
    subject: str = ""  # the commit's first line
    data: DataChange | None = None
    failed_stage: str | None = None
    reasons: tuple[str, ...] = ()  # the gate's first reasons, or the error
    f1: float | None = None
    champion_f1: float | None = None  # the champion this run was measured against
    champion_version: str | None = None
    model_version: str | None = None
    alias: str | None = None  # "champion" or "challenger"
    promotion_reason: str = ""
    durations: Mapping[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    mlflow_run_id: str | None = None
    run_link: str | None = None  # the MLflow run page, when an MLflow UI address is configured
    report_link: str | None = None  # its report artifact
    recovered: bool = False  # the run before it failed
    host: str = ""
    at: float = 0.0

    @property
    def key(self) -> str:
        """The idempotency key: one run's one event; a receiver seeing it twice has seen it once."""
        return f"retraind:{self.run_id}:{self.event}"

    @property
    def title(self) -> str:
        version = f" v{self.model_version}" if self.model_version else ""
        recovered = " (recovered after a failure)" if self.recovered and self.event != RECOVERED else ""
        return f"retraind: {TITLES.get(self.event, self.event)}{version}{recovered}"

    @property
    def f1_line(self) -> str | None:
        if self.f1 is None:
            return None
        line = f"weighted F1 {self.f1:.4f}"
        if self.champion_f1 is not None:
            delta = self.f1 - self.champion_f1
            percent = f" ({delta / self.champion_f1:+.2%})" if self.champion_f1 else ""
            champion = f"champion v{self.champion_version}" if self.champion_version else "the champion"
            line += f" vs {champion} {self.champion_f1:.4f}: {delta:+.4f}{percent}"
        elif self.event in (NEW_CHAMPION, CHALLENGER):
            line += " (no champion before)"
        return line

    @property
    def lines(self) -> list[str]:
        """The message body, a fact a line, most important first."""
        out: list[str] = []
        commit = f"commit {self.commit[:10]} {self.subject}".rstrip() if self.commit else "commit: none"
        out.append(f"run {self.run_id} ({self.trigger or 'manual'}), {commit}")
        if self.failed_stage:
            out.append(f"failed in stage {self.failed_stage}")
        out += [f"reason: {r}" for r in self.reasons[:3]]
        if len(self.reasons) > 3:
            out.append(f"... and {len(self.reasons) - 3} more reasons")
        if self.data is not None:
            out.append(self.data.line)
        if line := self.f1_line:
            out.append(line)
        if self.model_version:
            alias = f" ({self.alias})" if self.alias else ""
            reason = f": {self.promotion_reason}" if self.promotion_reason else ""
            out.append(f"model v{self.model_version}{alias}{reason}")
        if self.durations:
            stages = ", ".join(f"{s} {d:.1f}s" for s, d in self.durations.items())
            total = f" (total {self.duration_s:.1f}s)" if self.duration_s is not None else ""
            out.append(f"stages: {stages}{total}")
        if self.run_link:
            out.append(f"MLflow run: {self.run_link}")
        if self.report_link:
            out.append(f"report: {self.report_link}")
        return out

    @property
    def description(self) -> str:
        """One line for a commit status (Gitea and GitLab cut it; 140 characters is GitHub's limit)."""
        parts = [TITLES.get(self.event, self.event)]
        if self.event == GATE_REJECTED and self.reasons:
            parts.append(self.reasons[0])
        elif self.event in FAILURES and self.failed_stage:
            parts.append(f"stage {self.failed_stage}")
        if line := self.f1_line:
            parts.append(line)
        text = ": ".join(parts)
        return text if len(text) <= 140 else text[:139] + "…"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Notice:
        """A notice as the journal keeps it; keys this version does not know (a newer retraind
        wrote it) are left out rather than failing its delivery."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in json.loads(text).items() if k in known}
        data["reasons"] = tuple(data.get("reasons") or ())
        if data.get("data") is not None:
            d = data["data"]
            data["data"] = DataChange(
                tuple(d["added"]), tuple(d["changed"]), tuple(d["removed"]), d["rows"], d["compared"]
            )
        return cls(**data)


def event_for(
    status: str, failure_kind: str | None, champion: bool | None, previous_failed: bool
) -> str | None:
    """What a finished run tells people (None: nothing), given how the one before it ended.

    status: the run's; failure_kind: STAGE_FAILED or INFRA_FAILED for a failed run; champion: whether
    its registration became champion (None: it registered nothing of its own, or it is queued). A
    success after a failure is RECOVERED when it has no news of its own, else its news, marked
    recovered (one message per run). Cancelled runs (stopped on purpose) tell nobody.
    """
    if status == "gate_rejected":
        return GATE_REJECTED
    if status == "failed":
        return failure_kind or STAGE_FAILED
    if status not in ("succeeded", "up_to_date"):
        return None
    if champion is True:
        return NEW_CHAMPION
    if champion is False:
        return CHALLENGER
    return RECOVERED if previous_failed else None


def routed(notice: Notice, targets: Iterable[Target]) -> list[Target]:
    """The targets that want this notice (a commit status needs a commit)."""
    return [t for t in targets if t.wants(notice) and (t.kind not in COMMIT_STATUS_KINDS or notice.commit)]


def run_link(ui: str, experiment_id: str | None, run_id: str | None) -> str | None:
    if not (ui and experiment_id and run_id):
        return None
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def report_link(ui: str, experiment_id: str | None, run_id: str | None, path: str) -> str | None:
    page = run_link(ui, experiment_id, run_id)
    return None if page is None else f"{page}/artifacts/{path}"
