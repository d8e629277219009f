"""deploy/k8s/alerts/prometheusrule.yaml against the code whose metrics it reads.

Every expression parses as PromQL; every metric it selects is one the services export (or
Prometheus' own ``up``), with the sample suffix its type has; every label it filters or groups
by is one of the metric's labels or one Prometheus adds to a scraped target; a value it matches
on a metric's ``outcome`` is one the metric's help text names, and a notification ``kind`` is one
the notifier has. Every alert has a severity, a summary and a runbook entry in deploy/README.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from rapport_notifier import metrics as notifier_metrics
from rapport_scheduler import metrics as scheduler_metrics
from rapport_notifier.domain import rules as notifier_rules
from rapport_shared import metrics as shared_metrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "k8s" / "alerts" / "prometheusrule.yaml"
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "endpoint", "container"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported() -> dict[str, tuple[MetricWrapperBase, set[str]]]:
    """Sample name → (metric, the labels its samples carry)."""
    out = {}
    for module in (shared_metrics, notifier_metrics, scheduler_metrics):
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                for suffix in SUFFIXES[metric._type]:
                    labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                    out[metric._name + suffix] = (metric, labels)
    return out


def rules() -> list[dict]:
    (doc,) = yaml.safe_load_all(RULES.read_text())
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


NODES = {"AggregateExpr", "BinaryExpr", "Call", "MatrixSelector", "NumberLiteral", "ParenExpr", "StringLiteral",
         "SubqueryExpr", "UnaryExpr", "VectorSelector"}


def walk(node):
    """Every node of a parsed expression (the parser's classes have no common visitor)."""
    yield node
    for name in dir(node):
        if not name.startswith("_") and name not in ("parse", "prettify"):
            value = getattr(node, name)
            for child in value if isinstance(value, list) else [value]:
                if type(child).__name__ in NODES:
                    yield from walk(child)


def test_the_rules_file_is_a_prometheus_rule_with_runbooks():
    (doc,) = yaml.safe_load_all(RULES.read_text())
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    readme = (ROOT / "deploy" / "README.md").read_text()
    alerts_section = readme.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 8
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"] == "deploy/README.md#alerts"
        assert f"`{rule['alert']}`" in alerts_section, f"{rule['alert']}: no entry in deploy/README.md, Alerts"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_each_expression_reads_metrics_and_labels_the_code_exports(rule):
    expr = promql_parser.parse(rule["expr"])
    metrics = exported()
    selectors = [n for n in walk(expr) if type(n).__name__ == "VectorSelector"]
    assert selectors, f"{rule['alert']}: selects no metric"
    labels_in_scope: set[str] = set(TARGET_LABELS)
    for sel in selectors:
        if sel.name == "up":  # Prometheus' own, per scraped target
            available = set(TARGET_LABELS)
        else:
            assert sel.name in metrics, f"{rule['alert']}: {sel.name} is not exported (known: {sorted(metrics)})"
            metric, labels = metrics[sel.name]
            available = labels | TARGET_LABELS
            for m in sel.matchers.matchers:
                if m.name == "outcome":
                    for value in m.value.split("|"):
                        assert re.search(rf"\b{value}\b", metric._documentation), \
                            f"{rule['alert']}: outcome {value!r} is not one {sel.name} has ({metric._documentation})"
                if m.name == "kind" and sel.name.startswith("rapport_notifier_"):
                    assert set(m.value.split("|")) <= set(notifier_rules.TEMPLATED_KINDS), f"{rule['alert']}: kind {m.value}"
        for m in sel.matchers.matchers:
            assert m.name in available, f"{rule['alert']}: {sel.name} has no label {m.name!r}"
        labels_in_scope |= available
    for node in walk(expr):
        modifier = getattr(node, "modifier", None)
        if type(node).__name__ == "AggregateExpr" and modifier is not None:
            assert set(modifier.labels) <= labels_in_scope, f"{rule['alert']}: grouped by {modifier.labels}"
    # Every label the annotations print is one the expression's result keeps.
    for text in rule["annotations"].values():
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in labels_in_scope, f"{rule['alert']}: annotation uses $labels.{label}"


def test_the_safety_alert_covers_every_urgent_kind():
    (rule,) = [r for r in rules() if r["alert"] == "RapportSafetyNotificationNotDelivered"]
    kinds = [m.value for n in walk(promql_parser.parse(rule["expr"])) if type(n).__name__ == "VectorSelector"
             for m in n.matchers.matchers if m.name == "kind"]
    assert [set(k.split("|")) for k in kinds] == [set(notifier_rules.URGENT)]
