"""Prometheus configuration and alert rules, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT, require_tool

PROMETHEUS = ROOT / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = PROMETHEUS / "rules/retraind.rules.yml"
RULE_TESTS = PROMETHEUS / "rules/retraind.rules.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_tool("promtool")
    return subprocess.run(
        ["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False, timeout=300
    )


def alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_config_is_valid_and_scrapes_the_daemon() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    doc = yaml.safe_load(CONFIG.read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "retraind"]
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert [(CONFIG.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_severity_annotations_and_tests() -> None:
    """Each alert is tested firing (a non-empty exp_alerts) and not firing (an empty one)."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    names = [str(rule["alert"]) for rule in alerts()]
    assert len(names) >= 5
    for rule in alerts():
        name, labels, annotations = rule["alert"], rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in ("critical", "warning", "info"), name
        assert isinstance(annotations, dict) and {"summary", "description"} <= annotations.keys(), name
        assert "for" in rule, f"{name}: say how long it must hold, even 0m"
    for name in names:
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == name}
        assert outcomes == {True, False}, f"{name}: needs a firing and a non-firing case"


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same cases pass on the real rules and fail once a threshold moves: they assert, not just run."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    doc["tests"] = [  # only the quality cases: the week-long stage case takes seconds
        t for t in doc["tests"] if t["alert_rule_test"][0]["alertname"] == "RetraindModelQualityRegressed"
    ]
    tests = tmp_path / RULE_TESTS.name
    tests.write_text(yaml.safe_dump(doc))
    rules = tmp_path / RULES.name
    rules.write_text(RULES.read_text())
    assert promtool("test", "rules", str(tests)).returncode == 0
    rules.write_text(RULES.read_text().replace("> 0.05", "> 0.04", 1))
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "RetraindModelQualityRegressed" in result.stdout + result.stderr
