"""The HTTP shapes of each notification target, as their APIs document them, and one POST each.

- Slack incoming webhook (also Mattermost and Rocket.Chat): JSON with `text` (the fallback every
  one of them shows) and Slack `blocks`.
- A generic JSON webhook: the notice itself, signed like GitHub's and Gitea's: header
  `X-Retraind-Signature-256: sha256=<hex HMAC-SHA256 of the body>` when a secret is set.
- Gitea/Forgejo commit status: POST /api/v1/repos/{owner}/{repo}/statuses/{sha}
  {state, target_url, description, context}, `Authorization: token ...`.
- GitLab commit status: POST /api/v4/projects/{id}/statuses/{sha} {state, name, target_url,
  description}, `PRIVATE-TOKEN: ...`.

Every request carries the notice's key as `Idempotency-Key` (and `X-Retraind-Delivery`): the
courier may send a notice twice (at least once), never a different one under the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from daemon import __version__
from daemon.core.notify import FAILURES, GITEA, GITLAB, INFRA_FAILED, SLACK, TEST, Notice, Target

SIGNATURE_HEADER = "X-Retraind-Signature-256"
SCHEMA = "retraind.notification/v1"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


class DeliveryError(Exception):
    """The target did not take it; retry_after_s: what the receiver asked for (429/503 Retry-After)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _button(text: str, url: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "url": url}


def slack_payload(notice: Notice) -> dict[str, Any]:
    lines = notice.lines
    body = "\n".join(_mrkdwn(line) for line in lines)[:3000]  # a section's text is at most 3,000
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
    ]
    links = [("MLflow run", notice.run_link), ("Report", notice.report_link)]
    if buttons := [_button(text, url) for text, url in links if url]:
        blocks.append({"type": "actions", "elements": buttons})
    footer = f"retraind {notice.host}".strip()
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": _mrkdwn(f"{notice.title}\n" + "\n".join(lines)), "blocks": blocks}


def _mrkdwn(line: str) -> str:
    """Slack's three control characters escaped, as its formatting docs ask."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(notice: Notice) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(notice.to_json())
    text = "\n".join(notice.lines)
    return {"schema": SCHEMA, "key": notice.key, "title": notice.title, "text": text} | facts


def gitea_state(notice: Notice) -> str:
    if notice.event == INFRA_FAILED:
        return "error"
    if notice.event in FAILURES:
        return "failure"
    if notice.event == TEST:
        return "pending"
    return "success"  # a challenger's run succeeded: the gate kept the champion


def gitlab_state(notice: Notice) -> str:
    state = gitea_state(notice)
    return {"error": "failed", "failure": "failed"}.get(state, state)


def build_request(target: Target, notice: Notice) -> Request:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"retraind/{__version__}",
        "Idempotency-Key": notice.key,
        "X-Retraind-Delivery": notice.key,
        "X-Retraind-Event": notice.event,
    }
    if target.kind == SLACK:
        return Request(target.url, _json(slack_payload(notice)), headers)
    if target.kind in (GITEA, GITLAB):
        sha = (
            notice.commit or "0" * 40
        )  # routed() never sends a commit status without one; `notify test` does
        link = notice.report_link or notice.run_link
        if target.kind == GITEA:
            owner_repo = "/".join(quote(p, safe="") for p in target.repo.split("/", 1))
            url = f"{target.url.rstrip('/')}/api/v1/repos/{owner_repo}/statuses/{sha}"
            body: dict[str, Any] = {"state": gitea_state(notice), "description": notice.description,
                                    "context": target.context}  # fmt: skip
            headers["Authorization"] = f"token {target.secret}"
        else:
            url = f"{target.url.rstrip('/')}/api/v4/projects/{quote(target.repo, safe='')}/statuses/{sha}"
            body = {"state": gitlab_state(notice), "description": notice.description, "name": target.context}
            headers["PRIVATE-TOKEN"] = target.secret
        if link:
            body["target_url"] = link
        return Request(url, _json(body), headers)
    body_bytes = _json(webhook_payload(notice))
    if target.secret:
        headers[SIGNATURE_HEADER] = signature(target.secret, body_bytes)
    return Request(target.url, body_bytes, headers)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


class HttpSender:
    """POSTs a target's request; a 2xx is delivered, anything else a DeliveryError (the courier
    redacts its text before it is logged or stored)."""

    def __init__(self, timeout_s: float = 10.0, session: requests.Session | None = None) -> None:
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.trust_env = True  # HTTPS_PROXY and NO_PROXY, as an operator's shell has them

    def send(self, target: Target, notice: Notice) -> int:
        request = build_request(target, notice)
        try:
            response = self.session.post(
                request.url, data=request.body, headers=request.headers,
                timeout=(min(5.0, self.timeout_s), self.timeout_s), allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as e:
            raise DeliveryError(f"{target.kind} target {target.name}: {type(e).__name__}: {e}") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        snippet = response.text[:200].replace("\n", " ")
        raise DeliveryError(
            f"{target.kind} target {target.name}: HTTP {response.status_code} {snippet}".rstrip(),
            _retry_after(response) if response.status_code in (429, 503) else None,
        )
