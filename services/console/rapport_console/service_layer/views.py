"""Read-only views for the pages: the repository's rows shaped by the domain (no writes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from rapport_shared.http.access import ListFilter
from rapport_shared.instruments import Catalogue, load_catalogue

from ..adapters.repository import CaseloadRepository, as_dicts
from ..domain import charts, cohort, model

CHECKLIST_ITEMS = ("diagnosis", "sick_role_explained", "inventory_complete", "formulation_agreed", "focus_confirmed",
                   "contract_set")
ESCALATION_KINDS = {"safety_escalation"}
PAGE_KINDS = {"safety_alert", "review_notice"}


@cache
def catalogue() -> Catalogue:
    return load_catalogue()


def scale_for(code: str, totals: list[float]) -> charts.Scale:
    cat = catalogue()
    if code not in cat:  # an instrument this console's catalogue does not know: its own range
        return charts.Scale(code=code, name=code.upper(), low=min([0.0, *totals]), high=max([1.0, *totals]))
    d = cat.get(code)
    return charts.Scale(code=code, name=d.name, low=float(d.total_range.min), high=float(d.total_range.max),
                        caseness=float(d.caseness.value) if d.caseness else None,
                        caseness_op=d.caseness.op if d.caseness else "ge",
                        reliable_change=d.reliable_change_threshold,
                        bands=tuple((b.label, float(b.lower)) for b in d.bands))


def instrument_name(code: str) -> str:
    cat = catalogue()
    return cat.get(code).name if code in cat else code.upper()


async def caseload(repo: CaseloadRepository, scope: ListFilter, now: datetime) -> list[model.CaseloadRow]:
    episodes = await repo.episodes_for(scope)
    ids = [e["episode_id"] for e in episodes]
    return model.caseload(episodes, await repo.sessions_of(ids), await repo.scores_of(ids),
                          await repo.alerts_of(ids), now)


@dataclass
class InstrumentTrend:
    code: str
    name: str
    chart: charts.Chart
    rows: list[dict[str, Any]]  # the chart's data as a table


@dataclass
class AlertView:
    alert: dict[str, Any]
    pages: list[dict[str, Any]]
    escalations: list[dict[str, Any]]

    @property
    def open(self) -> bool:
        return self.alert["resolved_at"] is None

    @property
    def escalation_state(self) -> str:
        """In words: whether the notifier escalated it to on-call, or will."""
        if self.alert["kind"] != "safety":
            return "review alerts do not escalate"
        if self.escalations:
            return "escalated to on call"
        if self.alert["resolved_at"] is not None:
            return "resolved before any escalation"
        if self.alert.get("acknowledged_at") is not None:
            return "acknowledged: escalation stopped"
        return "escalates to on call unless acknowledged"


async def episode(repo: CaseloadRepository, episode_id: UUID, now: datetime) -> dict[str, Any] | None:
    e = await repo.episode(episode_id)
    if e is None:
        return None
    sessions = as_dicts(await repo.sessions_of([episode_id]))
    changes = as_dicts(await repo.phase_changes_of(episode_id))
    scores = as_dicts(await repo.scores_of([episode_id]))
    alerts = as_dicts(await repo.alerts_of([episode_id]))
    deliveries = as_dicts(await repo.deliveries_of(episode_id))
    plan = e["phase_plan"]
    # asyncpg hands jsonb over as text
    plan = json.loads(plan) if isinstance(plan, str) else (plan or [])
    starts = model.phase_starts(plan, changes, sessions)
    trends = []
    for code in sorted({s["instrument"] for s in scores}, key=lambda c: (c not in ("phq9", "gad7"), c)):
        mine = [s for s in scores if s["instrument"] == code]
        scale = scale_for(code, [s["total"] for s in mine])
        chart = charts.trend(scale, [(s["administered_at"], s["total"], s["band"], s["session_number"], s["timepoint"])
                                     for s in mine], [(p.phase, p.at) for p in starts], now=now)
        trends.append(InstrumentTrend(code, scale.name, chart, mine))
    by_cause: dict[UUID, list[dict[str, Any]]] = {}
    for d in deliveries:
        by_cause.setdefault(d["cause_event_id"], []).append(d)
    alert_views = []
    for a in sorted(alerts, key=lambda a: (a["resolved_at"] is not None, a["urgency"] != "urgent", a["raised_at"])):
        caused = by_cause.get(a["raised_event_id"], [])
        alert_views.append(AlertView(a, [d for d in caused if d["kind"] not in ESCALATION_KINDS],
                                     [d for d in caused if d["kind"] in ESCALATION_KINDS]))
    checklist = {c["item"]: c for c in await repo.checklist_of(episode_id)}
    focus = next((c for c in reversed(list(checklist.values())) if c["item"] == "focus_confirmed"), None)
    return {
        "episode": dict(e), "timeline": model.timeline(starts, sessions), "phase_starts": starts,
        "next_session": model.next_session(sessions, now) if e["ended_at"] is None else None,
        "trends": trends, "latest": model.latest_scores(scores), "alerts": alert_views,
        "open_alerts": sum(1 for a in alert_views if a.open),
        "deliveries": [{**d, "recipient": model.recipient(d["recipient_ref"])} for d in deliveries],
        "checklist": [(item, checklist.get(item)) for item in CHECKLIST_ITEMS],
        "focus": {"primary": (focus or {}).get("focus_primary") or e["focus_primary"],
                  "secondary": (focus or {}).get("focus_secondary") if focus else e["focus_secondary"],
                  "confirmed": focus is not None},
    }


async def cohort_report(repo: CaseloadRepository, scope: ListFilter, since: datetime | None,
                        until: datetime | None) -> dict[str, Any]:
    rows = [{**dict(r), "template": r["template_id"] or r["episode_template"], "condition": r["target_condition"]}
            for r in await repo.evaluations_for(scope, since, until)]
    return {"total": cohort.summarise("all", rows), "by_template": cohort.by(rows, "template"),
            "by_condition": cohort.by(rows, "condition")}
