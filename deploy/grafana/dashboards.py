"""Rapport's Grafana dashboards: the panels below are the one source; this script writes

    deploy/grafana/dashboards/<uid>.json            a dashboard each (Grafana: Import, or file provisioning)
    deploy/k8s/dashboards/grafana-dashboards.yaml   one ConfigMap holding them, for Grafana's dashboard
                                                    sidecar (label grafana_dashboard: "1")

    python3 deploy/grafana/dashboards.py            write both
    python3 deploy/grafana/dashboards.py --check    exit 1 when a written file is not what this script makes

Every query reads metrics the services export (rapport_shared/metrics.py, rapport_<svc>/metrics.py)
as Prometheus labels them on Kubernetes (the ServiceMonitor: ``service``, ``namespace``, ``pod``)
and in the compose stack (deploy/prometheus/prometheus.yml gives the same ``service`` label).
``Target.data`` says when a query returns something: "always" on a running system with traffic,
else the event its series needs. tests/unit/deploy/test_dashboards.py parses every query and checks
its metrics and labels against the code; tests/e2e/test_prometheus.py runs the "always" ones (and
those whose event it causes) against a Prometheus scraping the four services. Standard library only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
JSON_DIR = HERE / "dashboards"
CONFIGMAP = HERE.parent / "k8s" / "dashboards" / "grafana-dashboards.yaml"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The selector every panel starts from: the dashboard's namespace and service variables.
S = 'namespace=~"$namespace", service=~"$service"'
RATE = "$__rate_interval"
ALWAYS = "always"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    # ALWAYS, or the event that must have happened for the query to return a series.
    data: str = ALWAYS


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...] = field(default_factory=tuple)

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]


def quantiles(metric: str, by: str, selector: str = S, label: str = "{{service}}") -> tuple[Target, ...]:
    """p50 / p99 of a histogram, per ``by``."""
    return tuple(Target(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
                        f"{label} p{round(q * 100)}") for q in (0.5, 0.99))


SERVICES = Dashboard(
    "rapport-services", "Rapport · services",
    "Scrape targets and the HTTP APIs of the Rapport services: request rate, errors and latency.",
    (
        Row("Targets", (
            Panel("Targets up", "1 when Prometheus could scrape the target's /metrics (with its bearer token of "
                  "role metrics) at the last scrape; 0 for a process down or a token refused (401).",
                  (Target(f"up{{{S}}}", "{{service}} {{instance}}"),), kind="stat"),
        )),
        Row("HTTP", (
            Panel("Requests per second, by service and status",
                  "Every HTTP response, /metrics scrapes and probes included.",
                  (Target(f"sum by (service, status) (rate(rapport_http_requests_total{{{S}}}[{RATE}]))",
                          "{{service}} {{status}}"),), unit="reqps"),
            Panel("Server errors: share of responses that are 5xx",
                  "The alert RapportHttpErrors fires above 5 % for 10 minutes (deploy/README.md, Alerts).",
                  (Target(f'(sum by (service) (rate(rapport_http_requests_total{{{S}, status=~"5.."}}[{RATE}]))'
                          f" or 0 * sum by (service) (rate(rapport_http_requests_total{{{S}}}[{RATE}])))"
                          f" / sum by (service) (rate(rapport_http_requests_total{{{S}}}[{RATE}]))",
                          "{{service}}"),), unit="percentunit"),
            Panel("Client errors (4xx) by route",
                  "Refused requests: 401 (no or bad token), 403 (role or scope), 404, 409, 413, 422.",
                  (Target(f'sum by (service, method, route, status) (rate(rapport_http_requests_total{{{S}, '
                          f'status=~"4.."}}[{RATE}]))', "{{service}} {{method}} {{route}} {{status}}",
                          data="a request answered 4xx, e.g. one without a token"),), unit="reqps"),
            Panel("Server errors (5xx) by route", "A healthy system shows no series here.",
                  (Target(f'sum by (service, method, route, status) (rate(rapport_http_requests_total{{{S}, '
                          f'status=~"5.."}}[{RATE}]))', "{{service}} {{method}} {{route}} {{status}}",
                          data="a request answered 5xx (none in a healthy run)"),), unit="reqps"),
            Panel("API latency by service (p50, p99)",
                  "From a request's arrival to its response's headers, /metrics scrapes left out.",
                  quantiles("rapport_http_request_duration_seconds", "service", f'{S}, route!="/metrics"'),
                  unit="s"),
            Panel("Slowest routes (p99, top 10)", "Per route template (path parameters are not labels).",
                  (Target(f"topk(10, histogram_quantile(0.99, sum by (le, service, method, route) "
                          f"(rate(rapport_http_request_duration_seconds_bucket{{{S}}}[{RATE}]))))",
                          "{{service}} {{method}} {{route}}"),), unit="s"),
            Panel("Requests refused as too large (413)", "Bodies above RAPPORT_HTTP_MAX_BODY_BYTES, refused "
                  "before any handler reads them.",
                  (Target(f"sum by (service) (rate(rapport_http_body_refused_total{{{S}}}[{RATE}]))",
                          "{{service}}"),), unit="reqps"),
        )),
        Row("Clinic", (
            Panel("Wait for the first session (median, by template)",
                  "Days from intake completion to the first booked session of each newly planned course "
                  "(the scheduler's calendar as patients feel it).",
                  (Target(f"histogram_quantile(0.5, sum by (le, template_id) "
                          f"(rate(rapport_scheduler_first_session_wait_days_bucket{{{S}}}[1h])))",
                          "{{template_id}}", data="a course planned in the last hour"),), unit="d"),
        )),
    ),
)

EVENT_FLOW = Dashboard(
    "rapport-event-flow", "Rapport · event flow",
    "Events through Kafka: what each consumer group handles and how far behind it is, the outbox "
    "(commit → Kafka), dead letters and durable timers. Each service consumes in the group "
    "rapport-<service> (the `service` label), its safety lane, when it has one, in rapport-<service>-priority.",
    (
        Row("Consumers", (
            Panel("Records consumed per topic and group, by outcome",
                  "processed, duplicate (the inbox had it), ignored (a type the service does not handle), "
                  "other_lane, dead_lettered.",
                  (Target(f"sum by (service, topic, outcome) (rate(rapport_events_consumed_total{{{S}}}[{RATE}]))",
                          "{{service}} ← {{topic}}: {{outcome}}"),), unit="ops"),
            Panel("Consumer lag by group and topic",
                  "Records on the partitions a group owns that it has not fetched yet (high watermark − "
                  "position, read when /metrics is scraped). Growing: the group cannot keep up or is stuck.",
                  (Target(f"sum by (group, topic) (rapport_consumer_lag{{{S}}})", "{{group}} {{topic}}"),)),
            Panel("Consumer lag, top 10 partitions", "One partition far behind while its siblings are not: a "
                  "slow key (one busy episode) or a record being retried.",
                  (Target(f"topk(10, max by (group, topic, partition) (rapport_consumer_lag{{{S}}}))",
                          "{{group}} {{topic}}[{{partition}}]"),)),
            Panel("Handler time by event type (p99)", "Time to apply one event's effect (inside its transaction).",
                  (Target(f"histogram_quantile(0.99, sum by (le, service, event_type) "
                          f"(rate(rapport_handler_seconds_bucket{{{S}}}[{RATE}])))",
                          "{{service}} {{event_type}}"),), unit="s"),
        )),
        Row("Outbox (commit → Kafka)", (
            Panel("Events published per topic", "Outbox rows the relay put on Kafka.",
                  (Target(f"sum by (service, topic) (rate(rapport_outbox_published_total{{{S}}}[{RATE}]))",
                          "{{service}} → {{topic}}"),), unit="ops"),
            Panel("Outbox backlog", "pending: committed, not yet on Kafka (alert RapportOutboxBacklog above 1000); "
                  "parked: refused by Kafka, waiting for an operator (RapportOutboxParked); waiting: held "
                  "behind a parked row of the same episode.",
                  (Target(f"max by (service) (rapport_outbox_pending{{{S}}})", "{{service}} pending"),
                   Target(f"max by (service) (rapport_outbox_parked{{{S}}})", "{{service}} parked"),
                   Target(f"max by (service) (rapport_outbox_waiting{{{S}}})", "{{service}} waiting"))),
            Panel("Commit-to-Kafka lag (p50, p99)", "From the outbox insert to Kafka's acknowledgement "
                  "(alert RapportOutboxSlow: p99 above 30 s).",
                  quantiles("rapport_outbox_lag_seconds", "service"), unit="s"),
            Panel("Outbox rows parked and events refused (last hour)",
                  "`rapport outbox parked` lists parked rows with Kafka's error.",
                  (Target(f"sum by (service, topic, reason) (increase(rapport_outbox_rows_parked_total{{{S}}}[1h]))",
                          "{{service}} {{topic}} parked ({{reason}})",
                          data="Kafka refusing an outbox row for good (too large, or failing max_attempts passes)"),
                   Target(f"sum by (service, event_type) (increase(rapport_outbox_events_refused_total{{{S}}}[1h]))",
                          "{{service}} {{event_type}} refused",
                          data="an event larger than max_event_bytes refused by Outbox.add"))),
        )),
        Row("Dead letters", (
            Panel("Dead-lettered records per second, by topic and reason",
                  "`rapport dlq list <topic>.dlq.<group>` shows them with the error; alert RapportDeadLettered.",
                  (Target(f"sum by (service, topic, reason) (rate(rapport_dead_lettered_total{{{S}}}[{RATE}]))",
                          "{{service}} {{topic}} ({{reason}})", data="a record dead-lettered"),), unit="ops"),
            Panel("Dead letters since the process started", "Per service, topic and reason.",
                  (Target(f"sum by (service, topic, reason) (rapport_dead_lettered_total{{{S}}})",
                          "{{service}} {{topic}} ({{reason}})", data="a record dead-lettered"),), kind="stat"),
        )),
        Row("Durable timers", (
            Panel("Timers fired, by kind", "Reminders, escalations, overdue checks: each fired once its effect "
                  "committed.",
                  (Target(f"sum by (service, kind) (rate(rapport_timers_fired_total{{{S}}}[{RATE}]))",
                          "{{service}} {{kind}}", data="a durable timer falling due (hours or days after the "
                          "event that armed it)"),), unit="ops"),
            Panel("Timers parked, and firings retried",
                  "Parked timers wait for an operator (`rapport timers parked`; alert RapportTimerParked).",
                  (Target(f"max by (service, kind) (rapport_timers_parked{{{S}}})", "{{service}} {{kind}} parked"),
                   Target(f"sum by (service, kind, cause) (rate(rapport_timers_retried_total{{{S}}}[{RATE}]))",
                          "{{service}} {{kind}} retried ({{cause}})",
                          data="a timer's handler failing, or Postgres/Kafka unreachable while it fires"))),
        )),
    ),
)

SAFETY_ROUTE = 'route="/v1/episodes/{episode_id}/submissions", method="POST"'
NOTIFICATIONS = Dashboard(
    "rapport-notifications", "Rapport · notifications and safety alerts",
    "The notifier's deliveries by outcome and the path of a safety alert (a positive PHQ-9 item 9) "
    "from the submission to the clinician's page.",
    (
        Row("Deliveries", (
            Panel("Deliveries finished per second, by outcome", "delivered, failed (for good), suppressed "
                  "(replay), no_channel (the recipient has no reachable channel).",
                  (Target(f"sum by (outcome) (rate(rapport_notifier_deliveries_total{{{S}}}[{RATE}]))",
                          "{{outcome}}"),), unit="ops"),
            Panel("Deliveries by kind, channel and outcome (last hour)", "",
                  (Target(f"sum by (kind, channel, outcome) (increase(rapport_notifier_deliveries_total{{{S}}}[1h]))",
                          "{{kind}} {{channel}} {{outcome}}"),)),
            Panel("Failed and no-channel deliveries (last hour)",
                  "GET /v1/deliveries?status=failed gives each one's last_error (alert RapportNotificationsFailing).",
                  (Target(f'sum by (kind, channel, outcome) (increase(rapport_notifier_deliveries_total{{{S}, '
                          f'outcome=~"failed|no_channel"}}[1h]))', "{{kind}} {{channel}} {{outcome}}",
                          data="a delivery failing for good, or a recipient with no reachable channel"),)),
            Panel("In-doubt deliveries, by how they were settled (last hour)",
                  "resent: sent again without knowing whether the first attempt arrived (alert RapportInDoubtResent).",
                  (Target(f"sum by (channel, outcome) (increase(rapport_notifier_in_doubt_total{{{S}}}[1h]))",
                          "{{channel}} {{outcome}}",
                          data="a sender dying mid-send, or a send breaking off unanswered"),)),
        )),
        Row("Safety alerts", (
            Panel("Safety pages by outcome (last hour)",
                  "Anything but delivered needs a person now (alert RapportSafetyNotificationNotDelivered).",
                  (Target(f'sum by (kind, outcome) (increase(rapport_notifier_deliveries_total{{{S}, '
                          f'kind=~"safety_alert|safety_escalation"}}[1h]))', "{{kind}} {{outcome}}",
                          data="a safety alert paged (a positive PHQ-9 item 9)"),)),
            Panel("Safety-alert path: time per step (p99)",
                  "The submission answered by outcomes (HTTP), its alert event committed → on Kafka (outcomes' "
                  "outbox, all its events), the notifier applying rapport.alert.raised.v1 (the page queued), "
                  "and the page queued → accepted by the channel (the clinician's first page, retries included). "
                  "The notifier's backlog on rapport.outcomes is the next panel.",
                  (Target(f"histogram_quantile(0.99, sum by (le) (rate(rapport_http_request_duration_seconds_bucket"
                          f'{{namespace=~"$namespace", service="rapport-outcomes", {SAFETY_ROUTE}}}[{RATE}])))',
                          "outcomes: submission answered", data="a questionnaire submitted to outcomes"),
                   Target(f"histogram_quantile(0.99, sum by (le) (rate(rapport_outbox_lag_seconds_bucket"
                          f'{{namespace=~"$namespace", service="rapport-outcomes"}}[{RATE}])))',
                          "outcomes: event committed → on Kafka"),
                   Target(f"histogram_quantile(0.99, sum by (le) (rate(rapport_handler_seconds_bucket"
                          f'{{namespace=~"$namespace", service="rapport-notifier", '
                          f'event_type="rapport.alert.raised.v1"}}[{RATE}])))',
                          "notifier: alert applied, page queued", data="an alert raised by outcomes"),
                   Target(f"histogram_quantile(0.99, sum by (le) (rate(rapport_notifier_delivery_seconds_bucket"
                          f'{{namespace=~"$namespace", service="rapport-notifier", kind="safety_alert"}}[{RATE}])))',
                          "notifier: page queued → accepted", data="a safety alert paged (a positive PHQ-9 item 9)")),
                  unit="s"),
            Panel("Notifier's backlog on rapport.outcomes",
                  "Records of the topic that carries alerts not yet fetched by the notifier (each of its groups).",
                  (Target(f'sum by (group) (rapport_consumer_lag{{namespace=~"$namespace", '
                          f'service="rapport-notifier", topic="rapport.outcomes"}})', "{{group}}"),)),
            Panel("Safety pages that found nobody on call (last hour)",
                  "paged: RAPPORT_SAFETY_FALLBACK was paged instead; unconfigured: nobody was (alert RapportNobodyOnCall).",
                  (Target(f"sum by (kind, outcome) (increase(rapport_notifier_safety_fallback_total{{{S}}}[1h]))",
                          "{{kind}} {{outcome}}",
                          data="a safety page out of the clinician's hours with nobody on the on-call rota"),)),
        )),
    ),
)

DASHBOARDS = (SERVICES, EVENT_FLOW, NOTIFICATIONS)


# ------------------------------------------------------------------------------ Grafana JSON

def _variable(name: str, label: str, query: str, all_value: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
            "includeAll": True, "allValue": all_value, "multi": True, "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "hide": 0, "options": []}


TEMPLATING = [
    {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "refresh": 1,
     "hide": 0, "current": {}, "options": []},
    # No namespace label in the compose stack: "All" (.*) matches its series too.
    _variable("namespace", "Namespace", 'label_values(up{service=~"rapport-.*"}, namespace)', ".*"),
    _variable("service", "Service", 'label_values(up{namespace=~"$namespace", service=~"rapport-.*"}, service)',
              "rapport-.*"),
]


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict:
    targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend,
                "range": True, "instant": False} for i, t in enumerate(panel.targets)]
    out = {"id": pid, "type": panel.kind, "title": panel.title, "description": panel.description,
           "datasource": DATASOURCE, "gridPos": {"h": 8, "w": 12, "x": x, "y": y}, "targets": targets,
           "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []}}
    if panel.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    else:
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    return out


def render(d: Dashboard) -> dict:
    panels, pid, y = [], 1, 0
    for row in d.rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, panel in enumerate(row.panels):
            panels.append(_panel(panel, pid, 12 * (i % 2), y + 8 * (i // 2)))
            pid += 1
        y += 8 * ((len(row.panels) + 1) // 2)
    return {
        "uid": d.uid, "title": d.title, "description": d.description, "tags": ["rapport"],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "", "fiscalYearStartMonth": 0, "liveNow": False,
        "links": [{"title": "Rapport dashboards", "type": "dashboards", "tags": ["rapport"], "asDropdown": True}],
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": TEMPLATING},
        "panels": panels,
    }


def dashboard_json(d: Dashboard) -> str:
    return json.dumps(render(d), indent=2, ensure_ascii=False) + "\n"


def configmap_yaml() -> str:
    """One ConfigMap, a key per dashboard. Each value is a double-quoted YAML scalar written as a
    JSON string (YAML's double-quoted escapes include JSON's), so any YAML reader gets the JSON back."""
    lines = [
        "# GENERATED by deploy/grafana/dashboards.py (edit the panels there, then run it).",
        "# Rapport's Grafana dashboards for Grafana's dashboard sidecar (the Grafana Helm chart and",
        "# kube-prometheus-stack: sidecar.dashboards.enabled, label grafana_dashboard \"1\"; the sidecar must",
        "# search this namespace or ALL). They need a Prometheus data source that scrapes the services",
        "# (deploy/k8s/monitoring) — docs/observability.md.",
        "#   kubectl -n <namespace> apply -k deploy/k8s/dashboards",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: rapport-grafana-dashboards",
        "  labels:",
        "    grafana_dashboard: \"1\"",
        "    app.kubernetes.io/part-of: rapport",
        "  annotations:",
        "    # the folder, for a sidecar with folderAnnotation: grafana_folder",
        "    grafana_folder: Rapport",
        "data:",
    ]
    for d in DASHBOARDS:
        compact = json.dumps(render(d), separators=(",", ":"), ensure_ascii=False)
        lines.append(f"  {d.uid}.json: {json.dumps(compact, ensure_ascii=True)}")
    return "\n".join(lines) + "\n"


def outputs() -> dict[Path, str]:
    files = {JSON_DIR / f"{d.uid}.json": dashboard_json(d) for d in DASHBOARDS}
    files[CONFIGMAP] = configmap_yaml()
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    for path in stale:
        print(f"{path} is not what deploy/grafana/dashboards.py writes: run it", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
