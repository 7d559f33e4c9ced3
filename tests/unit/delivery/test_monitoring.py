"""Dashboards and alert rules only name metrics the processes really register.

The operator, API and worker metric modules are imported, and `prometheus_client`'s registry
says which series they expose (a counter `x` as `x_total`, a histogram as `x_bucket`, `x_sum`,
`x_count`). Every PromQL expression in the Grafana dashboards and the PrometheusRules is
tokenized for metric names, which must be among them. Each alert's runbook_url must point at a
heading of docs/operations.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import annostack.apps.observability
import annostack.apps.push.metrics
import annostack.operator.metrics
import annostack.operator.scaling
import annostack.workers.runtime  # noqa: F401  (imported for the metrics they register)

ROOT = Path(__file__).parents[3]
MONITORING = ROOT / "manifests" / "base" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
RULES = MONITORING / "prometheus-rules.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Named by alert rules before the process that exposes them lands; each entry says where from.
# Once registered, the name is checked like any other (and should be removed from here).
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "gauge": ("",),
    "info": ("_info",),
}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")  # not the m of 10m


def registered_series() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or keywords."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", text)))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in PROMQL_KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    dashboard = json.loads(path.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES.read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_tokenizer_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5..", x="y(z)"}'
        "[5m]))) / on(route) group_left b_total offset 10m and ignoring (pod) c unless d > bool 1"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def test_the_registry_holds_every_process_metric() -> None:
    series = registered_series()
    assert {
        "annostack_operator_reconciles_total",
        "annostack_operator_reconcile_duration_seconds_bucket",
        "annostack_tenant_backlog_messages",
        "annostack_api_request_duration_seconds_count",
        "annostack_worker_messages_total",
    } <= series


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_panel_queries_registered_metrics(path: Path) -> None:
    series = registered_series()
    exprs = dashboard_exprs(path)
    assert exprs, f"{path.name} has no panel queries"
    unknown = {
        (title, name) for title, expr in exprs for name in metric_names(expr) if name not in series
    }
    assert not unknown, f"{path.name}: panels query metrics nothing registers: {sorted(unknown)}"


def test_the_three_dashboards_exist_with_unique_uids_and_panel_ids() -> None:
    dashboards = {p.stem: json.loads(p.read_text()) for p in DASHBOARDS}
    assert set(dashboards) == {"operator", "api", "workers"}
    assert len({d["uid"] for d in dashboards.values()}) == 3
    for name, dashboard in dashboards.items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name


def test_every_alert_expression_names_registered_metrics() -> None:
    series = registered_series()
    unknown = {
        (rule["alert"], name)
        for rule in alert_rules()
        for name in metric_names(rule["expr"])
        if name not in series
    }
    assert not unknown, f"alerts on metrics nothing registers: {sorted(unknown)}"


def test_the_required_alerts_are_defined() -> None:
    assert {rule["alert"] for rule in alert_rules()} == {
        "AnnostackReconcileErrors",
        "AnnostackBacklogGrowing",
        "AnnostackDeadLetterTopicNotEmpty",
        "AnnostackPushConnectionsDropping",
    }


def _anchors(markdown: str) -> set[str]:
    """GitLab/GitHub heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_alert_has_a_runbook_section_in_the_operations_guide() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("docs/operations.md"), url
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {OPERATIONS}"
