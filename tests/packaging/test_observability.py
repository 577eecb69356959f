"""The Grafana dashboard and the alert rules query only metrics the code really exports, parse
as PromQL, and the alerts behave as their unit tests say (promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.packaging.conftest import CHART

DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
ALERTS = CHART / "files" / "alerts.yaml"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"

# Series that come from elsewhere, each named explicitly: kube-state-metrics (bot pod restarts,
# which no process can count for itself).
EXTERNAL_METRICS = {"kube_pod_container_status_restarts_total"}

# What the dashboard asks of each area, so a panel cannot silently disappear.
REQUIRED_METRICS = {
    "bots by phase": "wabot_bots",
    "connected bots": "wabot_connected",
    "messages per tenant": "wabot_messages_received_total",
    "commands per tenant": "wabot_commands_total",
    "command latency": "wabot_command_duration_seconds_bucket",
    "restarts": "kube_pod_container_status_restarts_total",
    "operator reconcile errors": "wabot_operator_reconcile_errors_total",
    "operator API requests": "wabot_operator_api_requests_total",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise FileNotFoundError("promtool is missing: apt-get install -y prometheus")
    return found


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can export, including the ones of labelled metrics that have
    no child yet (collect() shows no sample for those, so derive them from the type)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
        "stateset": ("",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def registered() -> set[str]:
    """The metric names the operator and the worker register, read from their registries."""
    from wabot_operator import metrics as operator_metrics

    from botworker.metrics import Metrics

    names = exported_names(operator_metrics.REGISTRY)
    names |= exported_names(Metrics("probe", "probe").registry)
    assert "wabot_operator_reconcile_total" in names and "wabot_connected" in names
    return names


# --- extracting queries ----------------------------------------------------------------------

GRAFANA_VARIABLES = re.compile(r"\$(__rate_interval|__interval|__range|__range_s)\b|"
                               r"\$\{[a-zA-Z_]+(:[a-z]+)?\}|\$[a-zA-Z_]+")


def _grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values PromQL accepts: durations in range selectors,
    a match-all regex in label matchers."""
    def sub(m: re.Match[str]) -> str:
        return "5m" if m.group(1) else ".*"
    return GRAFANA_VARIABLES.sub(sub, expr)


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    dashboard = json.loads(path.read_text())
    out = []
    for panel in _walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.append((f"{path.name}: panel {panel['title']!r}", target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]+)\)", query.strip())
            assert m, f"variable {var['name']}: unexpected query {query!r}"
            out.append((f"{path.name}: variable {var['name']}", m.group(1)))
    return out


def alert_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for group in rules["groups"] for r in group["rules"]]


def metric_names(expr: str) -> set[str]:
    import promql_parser

    ast = promql_parser.parse(_grafana_to_promql(expr))
    names: set[str] = set()
    anonymous: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                anonymous.append(str(node))

    promql_parser.walk(ast, visit)
    assert not anonymous, f"selectors without a metric name in {expr!r}: {anonymous}"
    return names


ALL_QUERIES = [q for d in DASHBOARDS for q in dashboard_queries(d)] + alert_queries()


def test_there_is_a_fleet_dashboard() -> None:
    assert [d.name for d in DASHBOARDS] == ["wabot-fleet.json"]


@pytest.mark.parametrize(("where", "expr"), ALL_QUERIES, ids=[w for w, _ in ALL_QUERIES])
def test_every_query_names_metrics_the_code_exports(where: str, expr: str,
                                                    registered: set[str]) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - registered - EXTERNAL_METRICS
    assert not unknown, (f"{where} queries {sorted(unknown)}, which neither the operator nor the "
                         f"worker registers (nor is it an allowed external metric)")


def test_dashboard_covers_the_fleet() -> None:
    used = set().union(*(metric_names(e) for d in DASHBOARDS for _, e in dashboard_queries(d)))
    missing = {what: m for what, m in REQUIRED_METRICS.items() if m not in used}
    assert not missing, f"the dashboard shows nothing for {missing}"


def test_dashboard_panels_use_the_datasource_variable_and_have_unique_ids() -> None:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in _walk_panels(dashboard["panels"])]
        assert len(ids) == len(set(ids)), "duplicate panel ids"
        for panel in _walk_panels(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (
                panel["title"])
            assert panel.get("description"), f"panel {panel['title']!r} has no description"


def test_per_tenant_panels_filter_by_the_tenant_variable() -> None:
    for where, expr in dashboard_queries(DASHBOARDS[0]):
        names = metric_names(expr)
        worker_series = {n for n in names if not n.startswith(("wabot_operator_", "wabot_bots",
                                                               "kube_"))}
        if worker_series and "variable" not in where:
            assert 'server_name=~"$server_name"' in expr, f"{where} ignores the tenant filter"


def test_alert_labels_carry_no_unbounded_values() -> None:
    """Alert labels group by tenant, bot, namespace or pod, never by a chat or a user."""
    for _, expr in alert_queries():
        for by in re.findall(r"by \(([^)]*)\)", expr):
            labels = {label.strip() for label in by.split(",")}
            assert labels <= {"namespace", "server_name", "bot", "pod", "phase"}, expr


def test_promtool_accepts_every_query() -> None:
    """Prometheus' own parser, on the alerts and on every dashboard query (as recording rules)."""
    out = subprocess.run([promtool(), "check", "rules", str(ALERTS)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"wabot:dashboard_query_{i}", "expr": _grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(q for d in DASHBOARDS for q in dashboard_queries(d))]}]}
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_unit_tests_pass() -> None:
    out = subprocess.run([promtool(), "test", "rules", str(ALERT_TESTS)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_unit_tested_and_documented() -> None:
    tested = {case["alertname"] for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for case in test.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] in tested, f"{rule['alert']} has no firing test case"
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
