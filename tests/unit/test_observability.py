"""The Grafana dashboard and the PrometheusRule read only metrics the scaler really exports.

The exported names come from a live registry (SelfMetrics on a fresh CollectorRegistry), so the check
follows the code. With promtool on PATH (Debian's `prometheus`), the rules are also checked and
unit-tested by Prometheus itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from scaler.selfmetrics import PREFIX, SelfMetrics
from scaler.store import Store
from scaler.triggers import Triggers
from tests.manifests_support import BASE, OBSERVABILITY, render, rendered, the

DASHBOARD = OBSERVABILITY / "keda-llm-scaler-dashboard.json"
RULES = OBSERVABILITY / "prometheusrule.yaml"
PROMTOOL_TESTS = OBSERVABILITY / "prometheusrule_test.yaml"

_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


@cache
def exported_names() -> frozenset[str]:
    """Every series name the scaler's /metrics can carry, read from the real collectors."""
    store = Store(retention=120.0, max_series=1000)
    triggers = Triggers(store, stale_after=30.0, warmup_until=0.0)
    registry = CollectorRegistry()
    SelfMetrics(registry, store, triggers, clock=lambda: 0.0, stale_after=30.0)
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SERIES_SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


# -- reading metric names out of PromQL ----------------------------------------------------------------------

_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_TOKEN = re.compile(
    r"(?P<braces>\{[^{}]*\})"
    r"|(?P<brackets>\[[^\[\]]*\])"
    r"|(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)"
    r"|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+)"
    r"|(?P<variable>\$\{?\w+\}?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<other>\S)"
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and literals left out)."""
    without_strings = _STRING.sub('""', expr)
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(without_strings) if not m.group().isspace()]
    names: set[str] = set()
    skip_parens = False
    depth_skipping = 0
    for index, (kind, text) in enumerate(tokens):
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if depth_skipping:
            depth_skipping += {"(": 1, ")": -1}.get(text, 0)
            continue
        if skip_parens:
            skip_parens = False
            if text == "(":
                depth_skipping = 1
                continue
        if kind != "name":
            continue
        if text in _LABEL_LISTS:
            skip_parens = True
        elif text not in _KEYWORDS and following != "(" and following not in {"by", "without"}:
            names.add(text)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{x="y{z}"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert metric_names("max by (ns) (b) > on (ns, so) group_left (c) d offset 5m") == {"b", "d"}
    assert metric_names("absent(e) or vector(1e3) unless f[1h:5m]") == {"e", "f"}
    assert metric_names("sum(g) - sum(h:recorded) * 2") == {"g", "h:recorded"}


def test_the_registry_knows_counters_and_histograms_by_their_series_names() -> None:
    names = exported_names()
    assert PREFIX + "datapoints_accepted_total" in names
    assert PREFIX + "rpc_duration_seconds_bucket" in names
    assert PREFIX + "rpc_duration_seconds" not in names  # a classic histogram has no bare series
    assert PREFIX + "series" in names


# -- the PrometheusRule -----------------------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES.read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


RULE_LIST = rules()


@pytest.mark.parametrize("rule", RULE_LIST, ids=lambda r: r.get("alert") or r.get("record"))
def test_alerts_read_only_exported_metrics(rule: dict[str, Any]) -> None:
    used = metric_names(rule["expr"])
    assert used, "the expression selects no metric"
    assert used <= exported_names(), f"not exported by the scaler: {sorted(used - exported_names())}"


@pytest.mark.parametrize("rule", RULE_LIST, ids=lambda r: r.get("alert") or r.get("record"))
def test_alerts_say_what_happened_and_what_to_do(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"KedaLlmScaler[A-Z][A-Za-z]+", rule["alert"])
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip()


def test_the_alerts_cover_what_operators_need() -> None:
    by_metric = {name: rule["alert"] for rule in RULE_LIST for name in metric_names(rule["expr"])}
    assert len({r["alert"] for r in RULE_LIST}) == len(RULE_LIST), "duplicate alert names"
    down = [r for r in RULE_LIST if r["expr"].replace(" ", "").startswith("absent(")]
    assert down and down[0]["labels"]["severity"] == "critical", "scaler down"
    assert PREFIX + "trigger_error" in by_metric, "stale data for a ScaledObject"
    assert {PREFIX + "recommendation", PREFIX + "signal_replicas"} <= set(by_metric), "pinned at maxReplicas"
    assert PREFIX + "datapoints_refused_total" in by_metric, "ingest refusals"


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (Debian: prometheus)")
    return found


def test_promtool_accepts_and_unit_tests_the_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    (tmp_path / "prometheusrule.rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(PROMTOOL_TESTS.read_text())
    for args in (["check", "rules", "prometheusrule.rules.yaml"], ["test", "rules", "tests.yaml"]):
        proc = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_promtool_tests_cover_every_alert() -> None:
    cases = yaml.safe_load(PROMTOOL_TESTS.read_text())
    tested = {t["alertname"] for case in cases["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == {r["alert"] for r in RULE_LIST}


# -- the dashboard ------------------------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


TARGETS = [(p["title"], t["refId"], t["expr"]) for p in panels() for t in p.get("targets", [])]


@pytest.mark.parametrize(("title", "ref", "expr"), TARGETS, ids=[f"{t}/{r}" for t, r, _ in TARGETS])
def test_panels_read_only_exported_metrics(title: str, ref: str, expr: str) -> None:
    used = metric_names(expr)
    assert used, "the query selects no metric"
    assert used <= exported_names(), f"not exported by the scaler: {sorted(used - exported_names())}"


def test_template_variables_read_only_exported_metrics() -> None:
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"${variable['name']}: {query!r}"
        assert metric_names(match.group(1)) <= exported_names()


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval", "__interval", "__range"}
    text = json.dumps(board)
    used = set(re.findall(r"\$\{?(\w+)", text))
    assert used <= defined, f"undefined variables: {used - defined}"
    for panel in panels():
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["description"], panel["title"]


def test_the_dashboard_covers_health_ingest_staleness_and_each_scaledobject() -> None:
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows[:3] == ["Scaler health", "Ingest", "Staleness"]
    per_object = [p for p in dashboard()["panels"] if p["type"] == "row" and p.get("repeat") == "scaledobject"]
    assert per_object, "no row repeated per ScaledObject"
    exprs = " ".join(e for _, _, e in TARGETS)
    for name in ("recommendation", "signal_replicas", "trigger_value", "datapoints_accepted_total", "stale_pods"):
        assert PREFIX + name in exprs


# -- the kustomization ---------------------------------------------------------------------------------------------


def test_the_dashboard_ships_unchanged_in_a_grafana_configmap() -> None:
    (configmap,) = rendered(OBSERVABILITY, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"][DASHBOARD.name]) == dashboard()


def test_prometheus_scrapes_the_ops_port_of_our_service() -> None:
    monitor = the(OBSERVABILITY, "ServiceMonitor")
    service = the(BASE, "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "ops" and endpoint.get("path", "/metrics") == "/metrics"
    assert the(OBSERVABILITY, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())["spec"]
    assert {o["kind"] for o in render(OBSERVABILITY)} == {"ConfigMap", "ServiceMonitor", "PrometheusRule"}
