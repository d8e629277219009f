"""The Grafana dashboards (deploy/grafana/dashboards.py → deploy/grafana/dashboards/*.json and the
sidecar ConfigMap deploy/k8s/dashboards/grafana-dashboards.yaml) against the code.

The written files are what the generator makes; the ConfigMap carries exactly the JSON files under
the sidecar's label; every panel query parses as PromQL once Grafana's variables are put in;
every metric it selects is one the services register (their modules imported, read from the
Prometheus registry) with the sample suffix its type has, or Prometheus' ``up``; every label it
filters or groups by is one of the metric's labels or one Prometheus adds to a scraped target; the
values it matches (routes, event types, topics, notification kinds, outcomes) exist. The queries
running against a real Prometheus: tests/e2e/test_prometheus.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import yaml
from rapport_notifier.domain import rules as notifier_rules
from rapport_tools import services as registry
from rapport_shared import topics
from rapport_shared.contracts import model_for

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "endpoint", "container"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
# What Grafana puts in for its variables when the dashboards are queried ("All" selected).
VARIABLES = {"$namespace": ".*", "$service": "rapport-.*", "$__rate_interval": "5m", "$__interval": "1m",
             "$__range": "1h"}
NODES = {"AggregateExpr", "BinaryExpr", "Call", "MatrixSelector", "NumberLiteral", "ParenExpr", "StringLiteral",
         "SubqueryExpr", "UnaryExpr", "VectorSelector"}


def generator():
    spec = importlib.util.spec_from_file_location("rapport_dashboards", ROOT / "deploy" / "grafana" / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


DASH = generator()
TARGETS = [(d, p, t) for d in DASH.DASHBOARDS for p in d.panels() for t in p.targets]


def exported() -> dict[str, tuple[MetricWrapperBase, set[str]]]:
    """Sample name → (metric, the labels its samples carry), from the default registry once every
    service's code is loaded (its bootstrap imports all of it)."""
    for svc in registry.names():
        importlib.import_module(f"rapport_{svc}.bootstrap")
    importlib.import_module("rapport_shared.metrics")
    out = {}
    for metric in set(REGISTRY._names_to_collectors.values()):
        if isinstance(metric, MetricWrapperBase):
            for suffix in SUFFIXES.get(metric._type, ("",)):
                labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                out[metric._name + suffix] = (metric, labels)
    return out


def substituted(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


def walk(node):
    """Every node of a parsed expression (the parser's classes have no common visitor)."""
    yield node
    for name in dir(node):
        if not name.startswith("_") and name not in ("parse", "prettify"):
            value = getattr(node, name)
            for child in value if isinstance(value, list) else [value]:
                if type(child).__name__ in NODES:
                    yield from walk(child)


def test_the_files_are_what_the_generator_writes():
    for path, text in DASH.outputs().items():
        assert path.exists() and path.read_text() == text, \
            f"{path.relative_to(ROOT)} is stale: run python3 deploy/grafana/dashboards.py"
    written = {p.name for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")}
    assert written == {f"{d.uid}.json" for d in DASH.DASHBOARDS}, "a dashboard file the generator does not write"


def test_the_configmap_holds_the_dashboards_for_grafanas_sidecar():
    k = next(yaml.safe_load_all((ROOT / "deploy/k8s/dashboards/kustomization.yaml").read_text()))
    assert k["resources"] == ["grafana-dashboards.yaml"]
    (cm,) = [doc for doc in yaml.safe_load_all(DASH.CONFIGMAP.read_text()) if doc is not None]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(cm["data"]) == {f"{d.uid}.json" for d in DASH.DASHBOARDS}
    for key, text in cm["data"].items():
        on_disk = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / key).read_text())
        assert json.loads(text) == on_disk, key
    # A ConfigMap holds at most 1 MiB; client-side apply keeps a copy in an annotation of 256 KiB.
    assert len(DASH.CONFIGMAP.read_bytes()) < 200_000


def test_each_dashboard_is_well_formed_grafana_json():
    uids = [d.uid for d in DASH.DASHBOARDS]
    assert len(uids) == len(set(uids))
    for d in DASH.DASHBOARDS:
        doc = DASH.render(d)
        variables = {v["name"] for v in doc["templating"]["list"]}
        assert variables == {"datasource", "namespace", "service"}
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), d.uid
        for p in doc["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (d.uid, p["title"])
            if p["type"] == "row":
                continue
            assert p["type"] in ("timeseries", "stat") and p["title"] and p["targets"], (d.uid, p["title"])
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for t in p["targets"]:
                used = set(re.findall(r"\$(\w+)", t["expr"]))
                assert used <= variables | {"__rate_interval", "__interval", "__range"}, (p["title"], used)
        # No two panels on the same cell.
        cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]]
        assert len(cells) == len(set(cells)), d.uid


def test_the_dashboards_show_what_issue_14_asks_for():
    metrics = set()
    for _, _, t in TARGETS:
        metrics |= {n.name for n in walk(promql_parser.parse(substituted(t.expr))) if type(n).__name__ == "VectorSelector"}
    assert {
        "rapport_events_consumed_total",                 # event flow per topic and group
        "rapport_consumer_lag",                          # lag
        "rapport_outbox_pending", "rapport_outbox_lag_seconds_bucket",  # outbox backlog
        "rapport_dead_lettered_total",                   # DLQ
        "rapport_notifier_deliveries_total",             # deliveries by outcome
        "rapport_http_requests_total", "rapport_http_request_duration_seconds_bucket",  # HTTP
    } <= metrics
    titles = [p.title for d in DASH.DASHBOARDS for p in d.panels()]
    assert any("Safety-alert path" in t for t in titles)
    for _, p, t in TARGETS:
        assert t.data == DASH.ALWAYS or len(t.data) > 10, f"{p.title}: say which event gives it data"


@pytest.mark.parametrize("dashboard,panel,target", TARGETS,
                         ids=[f"{d.uid}:{p.title}:{p.targets.index(t)}" for d, p, t in TARGETS])
def test_each_query_parses_and_reads_what_the_code_exports(dashboard, panel, target):
    where = f"{dashboard.uid} / {panel.title}"
    expr = promql_parser.parse(substituted(target.expr))
    metrics = exported()
    selectors = [n for n in walk(expr) if type(n).__name__ == "VectorSelector"]
    assert selectors, f"{where}: selects no metric"
    in_scope: set[str] = set(TARGET_LABELS)
    for sel in selectors:
        if sel.name == "up":
            available = set(TARGET_LABELS)
        else:
            assert sel.name in metrics, f"{where}: {sel.name} is not exported (known: {sorted(metrics)})"
            metric, labels = metrics[sel.name]
            available = labels | TARGET_LABELS
        for m in sel.matchers.matchers:
            assert m.name in available, f"{where}: {sel.name} has no label {m.name!r}"
            check_value(where, sel.name, m, metrics)
        in_scope |= available
    for node in walk(expr):
        modifier = getattr(node, "modifier", None)
        if type(node).__name__ == "AggregateExpr" and modifier is not None:
            assert set(modifier.labels) <= in_scope, f"{where}: grouped by {modifier.labels}"
    # The legend prints only labels the result keeps.
    for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.legend):
        assert label in in_scope, f"{where}: legend uses {label}"
    for node in walk(expr):
        if type(node).__name__ == "Call" and node.func.name == "histogram_quantile":
            (inner,) = [a for a in node.args if type(a).__name__ == "AggregateExpr"]
            assert "le" in inner.modifier.labels, f"{where}: histogram_quantile without le"


def check_value(where: str, metric_name: str, m, metrics) -> None:
    """The values a matcher names exist in the code (regex alternatives one by one)."""
    op = str(m.op)
    if m.name == "service" and "Re" not in op:
        assert m.value in {f"rapport-{s}" for s in registry.names()}, f"{where}: service {m.value}"
    if m.name == "route":
        access = (ROOT / "shared/rapport_shared/http/access_shared.yaml").read_text() + "".join(
            (ROOT / f"services/{s}/rapport_{s}/access.yaml").read_text() for s in registry.names())
        assert re.search(rf"^\s+[A-Z]+ {re.escape(m.value)}:", access, re.M), f"{where}: no route {m.value}"
    if m.name == "event_type":
        assert model_for(m.value) is not None, f"{where}: {m.value} is not in the event catalogue"
    if m.name == "topic":
        assert m.value in {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}, m.value
    if m.name == "kind" and metric_name.startswith("rapport_notifier_"):
        assert set(m.value.split("|")) <= set(notifier_rules.TEMPLATED_KINDS), f"{where}: kind {m.value}"
    if m.name == "outcome":
        metric = metrics[metric_name][0]
        for value in m.value.split("|"):
            assert re.search(rf"\b{value}\b", metric._documentation), f"{where}: {metric_name} has no outcome {value}"
