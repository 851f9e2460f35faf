"""prometheus/alertmanager.yml: checked by amtool, its routing tree tried on every shipped alert, and
end to end with the real binaries: a retraind daemon whose gate rejects three data drops, Prometheus
on the shipped prometheus.yml and rules, the Debian Alertmanager on the shipped routing tree, and a
local HTTP server standing in for Slack and for the webhook endpoint.

The end-to-end test runs temp copies of the shipped files, transformed in code, never configs of
its own: scrape and evaluation every second, targets on free ports, one rule's `for:` shortened,
group_wait and group_interval shortened, receiver URLs pointed at the local server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, require_tool
from tests.integration.daemon_harness import RUN_DEADLINE_S, Daemon
from tests.integration.services import (
    ALERTMANAGER,
    LOCALHOST,
    AlertmanagerServer,
    PrometheusServer,
    free_port,
    missing,
)
from tests.receiver import Received, Receiver

PROMETHEUS_DIR = ROOT / "prometheus"
AM_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
PROM_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules/retraind.rules.yml"
GATE_ALERT = "RetraindGateFailuresRepeated"  # warning: Slack only
SERVE_ALERT = "RetraindServeDown"  # critical: Slack and the webhook
# Where each severity of the shipped rules must end up (amtool lists the receivers in route order).
RECEIVERS = {"critical": "slack,webhook", "warning": "slack"}
DEADLINE_S = 120.0  # generous; the test waits on what the receiver got, so it ends as soon as it can


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_tool("amtool")
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False, timeout=60)


def shipped_alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_amtool_checks_the_shipped_config_and_its_template() -> None:
    result = amtool("check-config", str(AM_CONFIG))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "2 receivers" in out and "1 templates" in out and "1 inhibit rules" in out, out
    assert out.count("SUCCESS") == 2, out  # the config, then its template file
    doc = yaml.safe_load(AM_CONFIG.read_text())
    assert {r["name"] for r in doc["receivers"]} == {"slack", "webhook"}
    # no secret in the file: the Slack URL is read from a file, not written here
    (slack,) = next(r for r in doc["receivers"] if r["name"] == "slack")["slack_configs"]
    assert Path(slack["api_url_file"]).is_absolute() and "api_url" not in slack
    assert "slack_api_url" not in doc.get("global", {})
    assert "hooks.slack.com/services/" not in AM_CONFIG.read_text()


def test_prometheus_sends_to_the_local_alertmanager() -> None:
    doc = yaml.safe_load(PROM_CONFIG.read_text())
    (manager,) = doc["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_every_shipped_alert_is_routed_by_its_severity() -> None:
    for rule in shipped_alerts():
        severity = rule["labels"]["severity"]
        labels = [f"alertname={rule['alert']}", f"severity={severity}", "job=retraind", "instance=h:1"]
        result = amtool(
            "config", "routes", "test", f"--config.file={AM_CONFIG}",
            f"--verify.receivers={RECEIVERS[severity]}", *labels,
        )  # fmt: skip
        assert result.returncode == 0, f"{rule['alert']}: {result.stdout}{result.stderr}"
    unlabelled = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}", "alertname=Other")
    assert unlabelled.stdout.strip() == "webhook", unlabelled.stdout + unlabelled.stderr


# --- end to end ------------------------------------------------------------------------------


def alertmanager_config(receiver: Receiver, tmp: Path) -> dict[str, Any]:
    """The shipped config with its receivers on the local server, notified within a second or two."""
    doc = yaml.safe_load(AM_CONFIG.read_text())
    doc["templates"] = [str(PROMETHEUS_DIR / t) for t in doc["templates"]]  # they were relative

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(doc["route"])
    url_file = tmp / "slack-api-url"
    url_file.write_text(f"{receiver.url}/slack\n")  # as an operator writes it: with a newline
    kinds = set()
    for r in doc["receivers"]:
        for slack in r.get("slack_configs", []):
            assert "api_url_file" in slack, "the Slack URL should come from a file"
            slack["api_url_file"] = str(url_file)
            kinds.add("slack")
        for hook in r.get("webhook_configs", []):
            hook["url"] = f"{receiver.url}/webhook"
            kinds.add("webhook")
    assert kinds == {"slack", "webhook"}
    return doc


def prometheus_config(
    daemon_port: int, serve_port: int, prom_port: int, manager: AlertmanagerServer, rules: Path
) -> dict[str, Any]:
    """The shipped prometheus.yml with every second's scrapes and rules, targets on this test's ports."""
    doc = yaml.safe_load(PROM_CONFIG.read_text())
    doc["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["rule_files"] = [str(rules)]
    ((manager_targets,),) = [m["static_configs"] for m in doc["alerting"]["alertmanagers"]]
    manager_targets["targets"] = [f"{LOCALHOST}:{manager.port}"]
    ports = {"retraind": daemon_port, "retraind-serve": serve_port, "prometheus": prom_port}
    for job in doc["scrape_configs"]:
        (static,) = job["static_configs"]
        static["targets"] = [f"{LOCALHOST}:{ports[job['job_name']]}"]
    return doc


def rules_copy(tmp: Path) -> Path:
    """The shipped rules; only RetraindServeDown's pending period is cut (2m to 1s): the gate alert
    has none, and every other alert keeps its own, so none of them fires during the test."""
    doc = yaml.safe_load(RULES.read_text())
    (serve_down,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == SERVE_ALERT]
    serve_down["for"] = "1s"
    (gate,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == GATE_ALERT]
    assert gate["for"] == "0m"
    path = tmp / RULES.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def firing(received: Received, name: str) -> list[dict[str, Any]]:
    """The firing alerts called `name` in a webhook body."""
    alerts = received.json.get("alerts", [])
    return [a for a in alerts if a["labels"].get("alertname") == name and a["status"] == "firing"]


def slack_title(received: Received) -> str:
    attachments = received.json.get("attachments") or [{}]
    return str(attachments[0].get("title", ""))


@pytest.mark.podman
def test_three_gate_failures_reach_slack_and_a_dead_serve_reaches_slack_and_the_webhook(
    daemon: Daemon, receiver: Receiver, tmp_path: Path
) -> None:
    if shutil.which(ALERTMANAGER) is None:
        missing(ALERTMANAGER)
    if shutil.which("prometheus") is None:
        missing("prometheus")
    work = tmp_path / "services"
    (work / "alertmanager").mkdir(parents=True)
    (work / "prometheus").mkdir()
    manager = AlertmanagerServer(alertmanager_config(receiver, work), work / "alertmanager")
    prom = PrometheusServer([], work / "prometheus")
    serve_port = free_port()  # nothing listens there: retraind serve is down
    config = prometheus_config(daemon.metrics_port, serve_port, prom.port, manager, rules_copy(work))
    prom.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
    instance = f"{LOCALHOST}:{daemon.metrics_port}"
    serve_instance = f"{LOCALHOST}:{serve_port}"
    manager.start()
    try:
        prom.start()
        daemon.start()
        # the counters' zeros are scraped before the first failure, so increase() sees all three
        prom.wait_for(f'retraind_gate_failures_total{{job="retraind", instance="{instance}"}}', 60)
        for n in (1, 2, 3):
            (daemon.data / f"export-{n}.csv").write_bytes(os.urandom(16 * 1024))
            run = daemon.wait_idle(runs=n, timeout=RUN_DEADLINE_S)[-1]  # the first may build the image
            assert run.status == "gate_rejected" and run.failed_stage == "validate", run

        # warning: Slack, with the shipped template's title, colour and text
        slack = receiver.wait_match(
            lambda r: r.path == "/slack" and GATE_ALERT in slack_title(r), DEADLINE_S, "Slack message"
        )
        (attachment,) = slack.json["attachments"]
        assert attachment["title"] == f"[FIRING:1] {GATE_ALERT} on {instance} (warning)"
        assert attachment["fallback"] == attachment["title"]
        assert attachment["color"] == "warning"
        text = attachment["text"]
        assert f"*{GATE_ALERT}* firing on `{instance}` (severity warning, job retraind)" in text
        assert f"*Summary:* Repeated data-validation gate failures on {instance}" in text
        failed = re.search(
            r"\*Description:\* (\d+) runs failed the validation gate during the last hour", text
        )
        assert failed and int(failed[1]) >= 3, text
        assert "Gate failures by reason" in text and "Runbook" not in text  # the rule has no runbook_url
        # Alertmanager's own view: the warning went to Slack only, by the severity route
        (gate,) = [a for a in manager.alerts() if a["labels"]["alertname"] == GATE_ALERT]
        assert [r["name"] for r in gate["receivers"]] == ["slack"]
        assert gate["labels"]["severity"] == "warning" and gate["status"]["state"] == "active"

        # critical: the generic webhook (Alertmanager's JSON, version 4) and Slack too
        hook = receiver.wait_match(
            lambda r: r.path == "/webhook" and bool(firing(r, SERVE_ALERT)), DEADLINE_S, "webhook call"
        )
        assert hook.json["receiver"] == "webhook" and hook.json["version"] == "4"
        assert hook.json["status"] == "firing"
        assert hook.json["groupLabels"] == {"alertname": SERVE_ALERT, "instance": serve_instance}
        (alert,) = firing(hook, SERVE_ALERT)
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == "retraind-serve"
        assert alert["annotations"]["summary"] == f"retraind serve on {serve_instance} serves no model"
        assert "Requests to retraind serve are failing" in alert["annotations"]["description"]
        assert alert["generatorURL"].startswith("http://") and "/graph?" in alert["generatorURL"]
        critical = receiver.wait_match(
            lambda r: r.path == "/slack" and SERVE_ALERT in slack_title(r), DEADLINE_S, "Slack message"
        )
        assert critical.json["attachments"][0]["color"] == "danger"
        hooks = [r for r in receiver.received if r.path == "/webhook"]
        assert not any(firing(r, GATE_ALERT) for r in hooks)
    finally:
        prom.stop()
        manager.stop()
