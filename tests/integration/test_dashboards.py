"""Grafana dashboards: Grafana's own schema, provisioned datasources, PromQL through promtool, metric names.

The helpers (`sql_queries`, `expand_sql_macros`, `promql_expressions`, `metric_names_used`) are meant
for other tests too: the one that runs every `rawSql` against a real MLflow PostgreSQL database, and
the one that compares the names with the daemon's metrics registry.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, ROOT, require_tool

GRAFANA = ROOT / "grafana"
DASHBOARDS = {p.stem: p for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
SCHEMA_CHECK = GRAFANA / "schema-check"
DATASOURCES = GRAFANA / "provisioning/datasources/retraind.yaml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning/dashboards/retraind.yaml"
RULES = ROOT / "prometheus/rules/retraind.rules.yml"

OUTCOMES = frozenset({"succeeded", "failed", "gate_rejected", "cancelled", "interrupted", "up_to_date"})
STAGES = frozenset({"build", "validate", "preprocess", "train", "register"})
STAGE_OUTCOMES = frozenset({"success", "failure", "cancelled", "cache_hit"})
SOURCES = frozenset({"commit", "data", "schedule", "manual", "rescan"})
TRIGGERS = SOURCES | {"ci"}
GATE_REASONS = frozenset(
    {
        "jest",
        "parity",
        "unsafe_file",
        "missing_column",
        "unknown_label",
        "empty_share",
        "no_rows",
        "parse_error",
        "encoding",
        "binary",
        "duplicates",
        "conflicts",
        "class_balance",
        "text_length",
        "drift",
        "other",
    }
)
# The daemon's metrics contract: name -> (type, {label: allowed values or None for free text}).
DAEMON_CONTRACT: dict[str, tuple[str, dict[str, frozenset[str] | None]]] = {
    "retraind_stage_duration_seconds": ("histogram", {"stage": STAGES, "outcome": STAGE_OUTCOMES}),
    "retraind_pipeline_duration_seconds": ("histogram", {"outcome": OUTCOMES}),
    "retraind_runs_total": ("counter", {"outcome": OUTCOMES, "trigger": TRIGGERS}),
    "retraind_last_run_f1": ("gauge", {}),
    "retraind_champion_f1": ("gauge", {}),
    "retraind_last_run_timestamp_seconds": ("gauge", {}),
    "retraind_last_success_timestamp_seconds": ("gauge", {}),
    "retraind_events_total": ("counter", {"source": SOURCES}),
    "retraind_events_coalesced_total": ("counter", {}),
    "retraind_queue_depth": ("gauge", {}),
    "retraind_stage_cache_hits_total": ("counter", {"stage": STAGES}),
    "retraind_gate_failures_total": ("counter", {"reason": GATE_REASONS}),
    "retraind_tracking_backlog": ("gauge", {}),
    "retraind_notification_backlog": ("gauge", {}),
    "retraind_notifications_total": (
        "counter",
        {
            "kind": frozenset({"slack", "webhook", "gitea", "gitlab", "unknown"}),
            "outcome": frozenset({"delivered", "retry", "dropped"}),
        },  # dropped at 0 from the start
    ),
    "retraind_loop_errors_total": ("counter", {"reason": frozenset({"no_space", "other"})}),
    "retraind_state_no_space": ("gauge", {}),
    "retraind_journal_held_writes": ("gauge", {}),
    "retraind_state_bytes": ("gauge", {}),
    "retraind_build_info": ("gauge", {"version": None}),
}
ENDPOINTS = frozenset({"/predict", "/invocations", "/health", "/ping", "/version", "other"})
# retraind serve's (daemon/adapters/serve_front.py): versions are the registry's, codes HTTP's.
SERVE_CONTRACT: dict[str, tuple[str, dict[str, frozenset[str] | None]]] = {
    "retraind_serve_requests_total": ("counter", {"version": None, "endpoint": ENDPOINTS, "code": None}),
    "retraind_serve_request_duration_seconds": ("histogram", {"version": None, "endpoint": ENDPOINTS}),
    "retraind_serve_errors_total": ("counter", {"version": None, "endpoint": ENDPOINTS}),
    "retraind_serve_version_info": ("gauge", {"version": None}),
    "retraind_serve_up": ("gauge", {}),
    "retraind_serve_swaps_total": ("counter", {"outcome": frozenset({"switched", "failed"})}),
    "retraind_serve_shadow_texts_total": (
        "counter",
        {"version": None, "outcome": frozenset({"agreed", "disagreed"})},
    ),
    "retraind_serve_shadow_agreement_ratio": ("gauge", {"version": None}),
    "retraind_serve_shadow_request_duration_seconds": ("histogram", {"version": None, "endpoint": ENDPOINTS}),
    "retraind_serve_shadow_errors_total": ("counter", {"version": None}),
    "retraind_serve_shadow_dropped_total": ("counter", {}),
    "retraind_serve_shadow_version_info": ("gauge", {"version": None}),
}
CONTRACT = DAEMON_CONTRACT | SERVE_CONTRACT
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
TARGET_LABELS = frozenset({"job", "instance"})

# What Grafana substitutes before a query reaches Prometheus, for the promtool check.
GRAFANA_PROMQL_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1h",
    "$__range": "7d",
    "$instance": "127.0.0.1:9464",
    "$serve": "127.0.0.1:8080",
}
METRIC_NAME = re.compile(r"(?<![\w:])retraind_[A-Za-z0-9_]+(?![\w:])")
RECORDED_NAME = re.compile(r"(?<![\w:])[A-Za-z_]\w*:[\w:]*")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r"(?<![\w:])(retraind_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
EPOCH_MACRO = re.compile(r"\$__unixEpoch(?:From|To)\(\)")


# --- Reading the dashboards --------------------------------------------------------------------


def load_dashboard(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARDS[name].read_text())
    return data


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard name, panel, target) for every query target of every dashboard."""
    for name in DASHBOARDS:
        for panel in iter_panels(load_dashboard(name)):
            for target in panel.get("targets", []):
                yield name, panel, target


def iter_variables() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in DASHBOARDS:
        for variable in load_dashboard(name).get("templating", {}).get("list", []):
            yield name, variable


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of every provisioned datasource."""
    doc = yaml.safe_load(DATASOURCES.read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


def sql_queries() -> list[tuple[str, str, str]]:
    """(where, format, rawSql) of every SQL target and SQL variable query of the dashboards."""
    queries = [
        (f"{name}: {panel['title']} [{target['refId']}]", target["format"], target["rawSql"])
        for name, panel, target in iter_targets()
        if "rawSql" in target
    ]
    queries += [
        (f"{name}: variable {var['name']}", "table", var["query"])
        for name, var in iter_variables()
        if var.get("datasource", {}).get("uid") == "retraind-mlflow-pg"
    ]
    return queries


def variable_defaults() -> dict[str, str]:
    """The saved value of every dashboard variable that has one."""
    return {v["name"]: v["current"]["value"] for _, v in iter_variables() if "current" in v}


def expand_sql_macros(sql: str, *, from_s: int, to_s: int, variables: dict[str, str]) -> str:
    """Do what Grafana does to a PostgreSQL query before sending it, for the macros the dashboards use.

    A single-valued variable is inserted with its single quotes doubled (Grafana's SQL escaping).
    Raises KeyError for an unknown variable and ValueError for a macro this function does not know.
    """
    sql = sql.replace("$__unixEpochFrom()", str(from_s)).replace("$__unixEpochTo()", str(to_s))
    if "$__" in sql:
        raise ValueError(f"unexpanded Grafana macro in {sql!r}")

    def value(match: re.Match[str]) -> str:
        return variables[match.group(1) or match.group(2)].replace("'", "''")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, sql)


def promql_expressions() -> list[tuple[str, str]]:
    """(where, expression) of every PromQL query in the dashboards, variable queries included."""
    exprs = [
        (f"{name}: {panel['title']} [{target['refId']}]", target["expr"])
        for name, panel, target in iter_targets()
        if "expr" in target
    ]
    for name, var in iter_variables():
        if var.get("datasource", {}).get("uid") == "retraind-prometheus":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip(), re.DOTALL)
            exprs.append(
                (f"{name}: variable {var['name']}", label_values.group(1) if label_values else query)
            )
    return exprs


def rule_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [
        (rule.get("record") or rule["alert"], rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def for_promtool(expr: str) -> str:
    """The expression with Grafana's variables replaced as Grafana would."""
    for variable, value in sorted(GRAFANA_PROMQL_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    return expr


def metric_names_used() -> set[str]:
    """Every retraind_* series name read by the dashboards and the rules (histograms with their suffix)."""
    names: set[str] = set()
    for _, expr in promql_expressions() + rule_expressions():
        names.update(METRIC_NAME.findall(STRING_LITERAL.sub('""', expr)))
    return names


def contract_metric(series: str) -> str:
    """The contract metric a series name belongs to (a histogram's _bucket/_sum/_count to the histogram)."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and CONTRACT.get(base, ("",))[0] == "histogram":
            return base
    return series


def promtool_check_expressions(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool 2.42 checks no bare expression: check each as a recording rule instead."""
    rules = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False, timeout=60
    )


def schema_check_ready() -> None:
    """node and grafana/schema-check/node_modules (npm ci there), or skip / fail under CI."""
    require_tool("node")
    require_tool("npm")
    if not (SCHEMA_CHECK / "node_modules/ajv").is_dir():
        message = "grafana/schema-check/node_modules missing: run npm ci there (tools/setup.sh --dev)"
        pytest.fail(message) if IN_CI else pytest.skip(message)


# --- The dashboards and their provisioning -----------------------------------------------------


def test_both_dashboards_are_there_with_fixed_uids() -> None:
    assert {name: load_dashboard(name)["uid"] for name in DASHBOARDS} == {
        "retraind-model-quality": "retraind-model-quality",
        "retraind-pipeline-health": "retraind-pipeline-health",
    }


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    doc = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path.startswith("/") and path.endswith("/dashboards/retraind")
    assert "dashboards/retraind" in (GRAFANA / "README.md").read_text()


def yaml_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from yaml_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from yaml_strings(value)
    elif isinstance(node, str):
        yield node


def test_provisioning_uses_only_environment_syntax_grafana_expands() -> None:
    """Grafana expands with Go's os.ExpandEnv: ${NAME:-default} looks up a variable named 'NAME:-default'."""
    for path in (DATASOURCES, DASHBOARD_PROVIDERS):
        for value in yaml_strings(yaml.safe_load(path.read_text())):
            for name in re.findall(r"\$\{([^}]*)\}", value):
                assert re.fullmatch(r"[A-Za-z_]\w*", name), (
                    f"{path.name}: ${{{name}}} is not expanded by Grafana"
                )


def test_every_datasource_is_provisioned_by_uid() -> None:
    provisioned = provisioned_datasources()
    refs: list[tuple[str, Any]] = []
    for name in DASHBOARDS:
        for panel in iter_panels(load_dashboard(name)):
            if panel["type"] != "row":
                refs.append((f"{name}: {panel['title']}", panel.get("datasource")))
            for target in panel.get("targets", []):
                refs.append((f"{name}: {panel['title']} [{target['refId']}]", target.get("datasource")))
                assert target.get("datasource") == panel.get("datasource"), "mixed datasources in one panel"
    refs += [
        (f"{name}: variable {var['name']}", var["datasource"])
        for name, var in iter_variables()
        if var["type"] == "query"
    ]
    assert len(refs) > 20
    for where, ref in refs:
        assert isinstance(ref, dict) and ref.get("uid") in provisioned, f"{where}: datasource {ref!r}"
        assert ref.get("type") == provisioned[ref["uid"]], f"{where}: type {ref.get('type')!r}"


def test_schema_version_is_the_pinned_grafana_one() -> None:
    """schemaVersion is what @grafana/schema (pinned for Grafana 11) writes in its default dashboard."""
    package = json.loads((SCHEMA_CHECK / "package.json").read_text())
    assert package["devDependencies"]["@grafana/schema"].startswith("11.")
    schema_check_ready()
    defaults = SCHEMA_CHECK / "node_modules/@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen.mjs"
    match = re.search(r"schemaVersion:\s*(\d+)", defaults.read_text())
    assert match
    assert {name: load_dashboard(name)["schemaVersion"] for name in DASHBOARDS} == dict.fromkeys(
        DASHBOARDS, int(match.group(1))
    )


# --- Grafana's schema --------------------------------------------------------------------------


def run_validator(*files: Path) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run(
        ["node", "validate.js", *map(str, files)],
        cwd=SCHEMA_CHECK,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(reports) == len(files), result.stderr
    return result.returncode, reports


def test_dashboards_match_grafana_dashboard_schema() -> None:
    schema_check_ready()
    code, reports = run_validator(*DASHBOARDS.values())
    assert [r for r in reports if not r["valid"]] == []
    assert code == 0


def test_schema_rejects_a_misspelt_panel_key(tmp_path: Path) -> None:
    """The check can fail: objects in the schema are closed, so a typo is an error, not an extra key."""
    schema_check_ready()
    dashboard = load_dashboard("retraind-pipeline-health")
    dashboard["panels"][0]["gridpos"] = dashboard["panels"][0].pop("gridPos")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dashboard))
    code, (report,) = run_validator(broken)
    assert code == 1
    assert {"path": "/panels/0", "additionalProperty": "gridpos"} in [
        {"path": e["path"], "additionalProperty": e["params"].get("additionalProperty")}
        for e in report["errors"]
    ]


def test_committed_schema_is_generated_from_the_pinned_package(tmp_path: Path) -> None:
    schema_check_ready()
    out = tmp_path / "dashboard.schema.json"
    result = subprocess.run(
        ["npm", "run", "--silent", "schema", "--", "--out", str(out)],
        cwd=SCHEMA_CHECK,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    committed = json.loads((SCHEMA_CHECK / "dashboard.schema.json").read_text())
    assert json.loads(out.read_text()) == committed, "run: cd grafana/schema-check && npm run schema"
    assert committed["$ref"] == "#/definitions/Dashboard"
    assert committed["definitions"]["Panel"]["additionalProperties"] is False


# --- PromQL ------------------------------------------------------------------------------------


def test_every_promql_expression_passes_promtool(tmp_path: Path) -> None:
    require_tool("promtool")
    exprs = promql_expressions()
    assert len(exprs) > 20
    substituted = [for_promtool(expr) for _, expr in exprs]
    leftovers = [(where, e) for (where, _), e in zip(exprs, substituted, strict=True) if "$" in e]
    assert leftovers == [], "Grafana variables the check does not know"
    result = promtool_check_expressions(substituted, tmp_path)
    assert result.returncode == 0, (
        result.stdout
        + result.stderr
        + "\n"
        + "\n".join(f"check:expr_{i} = {where}" for i, (where, _) in enumerate(exprs))
    )
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_rejects_a_bad_expression(tmp_path: Path) -> None:
    """The check above can fail: a missing parenthesis is an error."""
    require_tool("promtool")
    result = promtool_check_expressions(["sum by (le) rate(retraind_events_total[5m])"], tmp_path)
    assert result.returncode != 0


def test_recorded_series_in_dashboards_are_recorded_by_the_rules() -> None:
    recorded = {name for name, _ in rule_expressions() if ":" in name}
    used = {
        name
        for _, expr in promql_expressions()
        for name in RECORDED_NAME.findall(STRING_LITERAL.sub('""', expr))
    }
    assert used, "the dashboards read no recorded series"
    assert used <= recorded


# --- Metric names and labels against the contract ----------------------------------------------


def test_metric_names_used_are_in_the_contract() -> None:
    used = metric_names_used()
    unknown = {name for name in used if contract_metric(name) not in CONTRACT}
    assert unknown == set()
    histograms = {n for n, (kind, _) in CONTRACT.items() if kind == "histogram"}
    assert {name for name in used if name in histograms} == set(), "a histogram is read without a suffix"


def test_every_contract_metric_is_shown_or_alerted_on() -> None:
    assert {contract_metric(name) for name in metric_names_used()} == set(CONTRACT)


def test_label_matchers_use_contract_labels_and_values() -> None:
    """Matchers fit the metric: outcome="success" is a stage outcome, "succeeded" a run outcome."""
    checked = 0
    for where, expr in promql_expressions() + rule_expressions():
        for series, matchers in SELECTOR.findall(expr):
            labels = CONTRACT[contract_metric(series)][1]
            for label, op, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS or (label == "le" and series.endswith("_bucket")):
                    continue
                assert label in labels, f"{where}: {series} has no label {label}"
                allowed = labels[label]
                if allowed is None or op in ("!=", "!~"):
                    continue
                values = value.split("|") if op == "=~" else [value]
                assert set(values) <= allowed, f"{where}: {series}{{{label}{op}{value!r}}}"
                checked += 1
    assert checked >= 3


def test_daemon_registry_exposes_every_metric_used() -> None:
    """Compare the names the dashboards and alerts read with what daemon.engine.metrics and retraind
    serve's front register."""
    metrics = pytest.importorskip("daemon.engine.metrics")
    from prometheus_client import CollectorRegistry

    from daemon.adapters.serve_front import ServeMetrics

    registry = CollectorRegistry()
    metrics.Metrics(registry)
    ServeMetrics(registry)
    exposed: set[str] = set()
    families: dict[str, str] = {}
    for family in registry.collect():
        families[family.name] = family.type
        if family.type == "counter":
            exposed.add(f"{family.name}_total")
        elif family.type == "histogram":
            exposed.update(f"{family.name}{suffix}" for suffix in HISTOGRAM_SUFFIXES)
        elif family.type == "info":
            exposed.add(f"{family.name}_info")
        else:
            exposed.add(family.name)
    assert metric_names_used() <= exposed, sorted(metric_names_used() - exposed)
    expected = {
        name.removesuffix("_total") if kind == "counter" else name: kind
        for name, (kind, _) in CONTRACT.items()
    }
    assert {name: kind for name, kind in families.items() if name.startswith("retraind_")} == expected


def test_daemon_registry_labels_match_the_contract() -> None:
    """Label names as the daemon exposes them at start; the values it starts with are contract values,
    and its bounded enums are the contract's (issue 15: only series read before their first event start
    at 0, the others appear when they happen)."""
    metrics = pytest.importorskip("daemon.engine.metrics")
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics.Metrics(registry)
    seen: dict[str, dict[str, set[str]]] = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label != "le":
                    seen.setdefault(name, {}).setdefault(label, set()).add(value)
    for name, (_, labels) in DAEMON_CONTRACT.items():
        assert set(seen.get(name, {})) == set(labels), name
        for label, allowed in labels.items():
            if allowed is not None:
                assert seen[name][label] <= allowed, f"{name}{{{label}}}"
    enums = {
        "retraind_stage_duration_seconds": {"stage": metrics.STAGES, "outcome": metrics.STAGE_OUTCOMES},
        "retraind_pipeline_duration_seconds": {"outcome": metrics.RUN_OUTCOMES},
        "retraind_runs_total": {"outcome": metrics.RUN_OUTCOMES, "trigger": metrics.TRIGGERS},
        "retraind_events_total": {"source": metrics.SOURCES},
        "retraind_stage_cache_hits_total": {"stage": metrics.STAGES},
        "retraind_gate_failures_total": {"reason": metrics.GATE_REASONS},
        "retraind_loop_errors_total": {"reason": metrics.LOOP_ERROR_REASONS},
        "retraind_notifications_total": {"kind": metrics.NOTIFY_KINDS, "outcome": metrics.NOTIFY_OUTCOMES},
    }
    assert {n for n, (_, labels) in DAEMON_CONTRACT.items() if any(labels.values())} == set(enums)
    for name, labels in enums.items():
        for label, values in labels.items():
            assert set(values) == CONTRACT[name][1][label], f"{name}{{{label}}}"


# --- SQL ---------------------------------------------------------------------------------------


def test_sql_queries_are_raw_and_expandable() -> None:
    """Another test runs them on a real MLflow database; here: shape, macros, millisecond conversion."""
    queries = sql_queries()
    assert len(queries) >= 6
    defaults = variable_defaults()
    assert defaults["model"] == "nlp-sentiment-classifier"
    assert defaults["experiment"] == "NLP Text Classification"
    for where, fmt, sql in queries:
        assert fmt in ("time_series", "table"), where
        expanded = expand_sql_macros(sql, from_s=1_767_225_600, to_s=1_767_312_000, variables=defaults)
        assert "$" not in expanded, where
        # Grafana's epoch macros are seconds, MLflow stores milliseconds; int4 * 1000 would overflow.
        for macro in EPOCH_MACRO.finditer(sql):
            assert sql[macro.end() :].startswith("::bigint * 1000"), f"{where}: {macro.group()} not converted"
        if fmt == "time_series":
            assert re.search(r'AS "time"', sql) and re.search(r'AS "value"', sql), where
            assert re.search(r'AS "metric"', sql), where
            assert re.search(r"ORDER BY 1\b", sql), f"{where}: time series rows must be sorted by time"


def test_sql_expansion_escapes_variable_quotes() -> None:
    sql = "SELECT 1 WHERE name = '$model' AND t > $__unixEpochFrom()::bigint * 1000"
    assert expand_sql_macros(sql, from_s=5, to_s=6, variables={"model": "it's"}) == (
        "SELECT 1 WHERE name = 'it''s' AND t > 5::bigint * 1000"
    )
    with pytest.raises(ValueError):
        expand_sql_macros("SELECT $__timeFilter(x)", from_s=0, to_s=0, variables={})


def test_serve_registry_labels_match_the_contract() -> None:
    """retraind serve's series carry the contract's labels once a request was answered, and its
    endpoint label is bounded to the contract's endpoints."""
    from prometheus_client import CollectorRegistry

    from daemon.adapters.serve_front import ENDPOINTS as SERVED
    from daemon.adapters.serve_front import ServeMetrics, endpoint_of

    registry = CollectorRegistry()
    m = ServeMetrics(registry)
    m.requests.labels("3", "/predict", "200").inc()
    m.latency.labels("3", "/predict").observe(0.002)
    m.errors.labels("3", "/invocations").inc()
    m.served.labels("3").set(1)
    m.up.set(1)
    m.shadowing("4")
    m.shadow_agreement.labels("4").set(0.9)
    seen: dict[str, set[str]] = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        for sample in family.samples:
            seen.setdefault(name, set()).update(k for k in sample.labels if k != "le")
    assert {n: set(labels) for n, (_, labels) in SERVE_CONTRACT.items()} == seen
    assert {*SERVED, "other"} == ENDPOINTS and endpoint_of("/admin") == "other"
