"""Outcomes' HTTP API (thin: validate, call a handler in a unit of work, shape the answer)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from rapport_shared.contracts.outcomes import AlertKind
from rapport_shared.faults import crash_point
from rapport_shared.http.access import Grant, current_grant
from rapport_shared.http.errors import Invalid, NotFound

from ..adapters import repository as repo
from ..domain import cohort, fhir
from ..domain.commands import ResolveAlert, SubmitScores
from ..domain.model import Refused, Submission
from ..domain.policy import OutcomesPolicy
from ..service_layer import handlers

# Who may call what, on which records, is the access policy's (../access.yaml), enforced app-wide
# before a handler runs: a record outside the caller's relationships answers like a missing one.
episodes = APIRouter(prefix="/v1/episodes", tags=["scores"])
alerts = APIRouter(prefix="/v1/alerts", tags=["alerts"])
reports = APIRouter(prefix="/v1/reports", tags=["reports"])
instruments = APIRouter(prefix="/v1/instruments", tags=["instruments"])
routers = [episodes, alerts, reports, instruments]


def _policy(request: Request) -> OutcomesPolicy:
    return request.app.state.policy


def _holds(grant: Grant, role: str) -> bool:
    """Whether the caller reaches this route's record *as* ``role`` (a token may carry several
    roles: a partner role must not pass on a clinician's view)."""
    return grant.scope is not None and role in grant.roles


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def submission_view(s: Submission) -> dict:
    return {
        "submission_id": str(s.submission_id), "episode_id": str(s.episode_id),
        "client_submission_id": s.client_submission_id, "instrument": s.instrument, "timepoint": s.timepoint.value,
        "session_number": s.session_number, "total": s.total, "display_total": s.display_total, "band": s.band,
        "caseness": s.caseness, "subscales": dict(s.subscales), "flags": list(s.flags),
        "baseline_total": s.baseline_total, "change_from_baseline": s.change_from_baseline,
        "reliable_change": s.reliable_change.value if s.reliable_change else None,
        "administered_at": _iso(s.administered_at), "scored_at": _iso(s.scored_at),
        "alert_ids": [str(a) for a in s.alert_ids],
    }


def alert_view(a) -> dict:
    out = {
        "alert_id": str(a["alert_id"]), "episode_id": str(a["episode_id"]), "kind": a["kind"], "urgency": a["urgency"],
        "reason_code": a["reason_code"], "clinician_id": a["clinician_id"],
        "submission_id": str(a["submission_id"]) if a["submission_id"] else None, "instrument": a["instrument"],
        "session_number": a["session_number"], "raised_at": _iso(a["raised_at"]), "status": a["status"],
        "resolution": None if a["status"] == "open" else {
            "resolved_by": a["resolved_by"], "resolved_at": _iso(a["resolved_at"]), "recorded_at": _iso(a["recorded_at"]),
            "action": a["action"], "action_text": a["action_text"]},
    }
    if "linked_alert_ids" in a.keys():  # the open alerts of its cause a repeat was linked to
        out["linked_alert_ids"] = [str(x) for x in a["linked_alert_ids"] or []]
    if "linked_count" in a.keys():
        out["linked_submissions"] = a["linked_count"]
    return out


# ---- submissions and scores -----------------------------------------------------------------

@episodes.post("/{episode_id}/submissions", status_code=201, summary="Submit a questionnaire (scored here)",
               responses={200: {"description": "the same client_submission_id again: the stored submission"},
                          404: {"description": "unknown episode"}, 409: {"description": "client id reused"},
                          422: {"description": "refused; `field` names what is wrong; nothing stored"}})
async def submit(episode_id: UUID, cmd: SubmitScores, request: Request, grant: Grant = Depends(current_grant)):
    async with request.app.state.runtime.uow() as uow:
        accepted = await handlers.submit(cmd, uow, episode_id, grant.principal, _policy(request))
    # Committed (score, alerts and their events) but not yet published: the crash test's point.
    crash_point("outcomes.submission.after_commit")
    body = {**submission_view(accepted.submission), "replayed": accepted.replayed}
    return JSONResponse(body, status_code=200 if accepted.replayed else 201)


async def _episode_or_404(conn, episode_id: UUID):
    episode = await repo.get_episode(conn, episode_id)
    if episode is None:
        raise NotFound(f"no episode {episode_id}", field="episode_id")
    return episode


@episodes.get("/{episode_id}/scores", summary="An episode's score history per instrument, with bands")
async def scores(episode_id: UUID, request: Request) -> dict:
    policy = _policy(request)
    async with request.app.state.runtime.pool.acquire() as conn:
        await _episode_or_404(conn, episode_id)
        subs = await repo.history(conn, episode_id, policy)
    by_instrument: dict[str, dict] = {}
    for s in subs:
        if s.instrument not in by_instrument:
            d = policy.catalogue.get(s.instrument)
            by_instrument[s.instrument] = {
                "name": d.name, "loinc_total": d.loinc_total,
                "bands": [{"code": b.code, "label": b.label, "lower": b.lower} for b in d.bands],
                "caseness": d.caseness.model_dump() if d.caseness else None,
                "reliable_change_threshold": d.reliable_change_threshold, "scores": [],
            }
        by_instrument[s.instrument]["scores"].append(submission_view(s))
    return {"episode_id": str(episode_id), "instruments": by_instrument,
            # flat, in time order (the walking skeleton's shape)
            "scores": [submission_view(s) for s in subs]}


@episodes.get("/{episode_id}/submissions/{submission_id}", summary="One submission with its answers")
async def submission(episode_id: UUID, submission_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        await _episode_or_404(conn, episode_id)
        found = [s for s in await repo.history(conn, episode_id, _policy(request)) if s.submission_id == submission_id]
    if not found:
        raise NotFound(f"no submission {submission_id} in episode {episode_id}", field="submission_id")
    return {**submission_view(found[0]), "answers": {str(k): v for k, v in sorted(found[0].answers.items())}}


@episodes.get("/{episode_id}/outcome", summary="The end-of-course evaluation")
async def outcome(episode_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        await _episode_or_404(conn, episode_id)
        ev = await repo.get_evaluation(conn, episode_id)
    if ev is None:
        raise NotFound(f"episode {episode_id} has not been evaluated (its course has not ended)", field="episode_id")
    out = {k: ev[k] for k in ("template_id", "clinician_id", "end_reason", "attended_sessions", "treatment_sessions",
                              "finished_course",
                              "counts_toward_recovery", "caseness_at_baseline", "caseness_at_end", "recovery",
                              "reliable_improvement", "reliable_deterioration", "reliable_recovery", "response",
                              "remission")}
    return {"episode_id": str(episode_id), "course_id": str(ev["course_id"]) if ev["course_id"] else None, **out,
            **json.loads(ev["detail"]), "ended_at": _iso(ev["ended_at"]), "evaluated_at": _iso(ev["evaluated_at"]),
            "event_id": str(ev["event_id"]), "revision": ev["revision"]}


@episodes.get("/{episode_id}/fhir", summary="FHIR R4 Bundle: QuestionnaireResponse + Observation per submission",
              description="A clinician of the episode gets the answers (QuestionnaireResponse per submission); a "
                          "partner of its organisation gets the Observations only (totals, bands, subscales): "
                          "coded facts, never item answers.",
              response_class=JSONResponse)
async def fhir_export(episode_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> JSONResponse:
    policy = _policy(request)
    async with request.app.state.runtime.pool.acquire() as conn:
        episode = await _episode_or_404(conn, episode_id)
        subs = await repo.exported_submissions(conn, episode_id, policy)
    bundle = fhir.episode_bundle(episode_id=episode_id, person_id=episode.person_id, submissions=subs,
                                 catalogue=policy.catalogue, generated_at=request.app.state.runtime.clock.now(),
                                 answers=_holds(grant, "clinician"))
    return JSONResponse(bundle, media_type="application/fhir+json")


@episodes.get("/{episode_id}/alerts", summary="An episode's alerts, open and resolved")
async def episode_alerts(episode_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        await _episode_or_404(conn, episode_id)
        rows = await repo.alerts(conn, clinician_id=None, status=None, kind=None, episode_id=episode_id, limit=1000)
    return {"episode_id": str(episode_id), "alerts": [alert_view(r) for r in rows]}


# ---- alerts ---------------------------------------------------------------------------------

@alerts.get("", summary="Alerts per clinician (default: the caller's open alerts, urgent first)",
            description="Only alerts of episodes the caller reaches: a clinician's assigned episodes (their "
                        "organisation's with a supervisor or on-call duty), an admin's organisation. "
                        "`clinician_id` narrows that, never widens it.")
async def list_alerts(request: Request, grant: Grant = Depends(current_grant),
                      clinician_id: str | None = Query(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"),
                      status: Literal["open", "resolved", "all"] = "open", kind: AlertKind | None = None,
                      limit: int = Query(default=200, ge=1, le=1000)) -> dict:
    who = grant.principal
    if clinician_id is None and "admin" not in who.roles:
        clinician_id = who.sub
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await repo.alerts(conn, clinician_id=clinician_id, status=None if status == "all" else status,
                                 kind=kind.value if kind else None, episode_id=None, limit=limit,
                                 scope=grant.list_filter())
    return {"clinician_id": clinician_id, "status": status, "alerts": [alert_view(r) for r in rows]}


@alerts.get("/{alert_id}", summary="One alert with its linked submissions and audit trail")
async def get_alert(alert_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        a = await repo.get_alert(conn, alert_id)
        if a is None:
            raise NotFound(f"no alert {alert_id}", field="alert_id")
        links = await repo.linked_submissions(conn, alert_id)
        trail = await repo.audit_trail(conn, alert_id)
    return {**alert_view(a),
            "linked_submissions": [{"submission_id": str(r["submission_id"]), "linked_at": _iso(r["linked_at"])} for r in links],
            "audit": [{"action": r["action"], "actor": r["actor"], "actor_role": r["actor_role"], "at": _iso(r["at"]),
                       "details": json.loads(r["details"]), "event_id": str(r["event_id"]) if r["event_id"] else None}
                      for r in trail]}


@alerts.post("/{alert_id}/resolve", summary="Record a clinician's resolution of an open alert",
             responses={200: {"description": "resolved (or the same resolution again)"},
                        409: {"description": "already resolved differently"}})
async def resolve(alert_id: UUID, cmd: ResolveAlert, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    async with request.app.state.runtime.uow() as uow:
        row, replayed = await handlers.resolve_alert(cmd, uow, alert_id, grant.principal, _policy(request))
    return {**alert_view(row), "replayed": replayed}


# ---- reports --------------------------------------------------------------------------------

@reports.get("/cohort", summary="Cohort outcomes per template or per clinician (NHS Talking Therapies style)",
             description="Over the episodes the caller reaches: an admin's or supervisor's organisation, a "
                         "clinician's own episodes.")
async def cohort_report(request: Request, grant: Grant = Depends(current_grant), group_by: Literal["template", "clinician"] = "template",
                        template_id: str | None = None, clinician_id: str | None = None,
                        ended_from: datetime | None = None, ended_to: datetime | None = None) -> dict:
    for name, t in (("ended_from", ended_from), ("ended_to", ended_to)):
        if t is not None and t.tzinfo is None:
            raise Invalid("must carry a UTC offset", field=name)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await repo.evaluation_rows(conn, template_id=template_id, clinician_id=clinician_id,
                                          ended_from=ended_from, ended_to=ended_to, scope=grant.list_filter())
    report = cohort.cohort_report(rows, group_by)
    report["filters"] = {"template_id": template_id, "clinician_id": clinician_id,
                         "ended_from": _iso(ended_from), "ended_to": _iso(ended_to)}
    report["definitions"] = (cohort.__doc__ or "").strip()
    return report


# ---- the catalogue --------------------------------------------------------------------------

def _instrument(d) -> dict:
    return {"code": d.code, "name": d.name, "title": d.title, "rater": d.rater, "measures": d.measures,
            "loinc_total": d.loinc_total, "loinc_panel": d.loinc_panel,
            "items": [{"number": i.number, "allowed": list(i.allowed) if i.allowed else list(range(i.min, i.max + 1)),
                       **({"label": i.label} if i.label else {})} for i in d.items],
            "total_range": d.total_range.model_dump(), "bands": [b.model_dump() for b in d.bands],
            "caseness": d.caseness.model_dump() if d.caseness else None,
            "reliable_change_threshold": d.reliable_change_threshold}


@instruments.get("", summary="The instrument catalogue (what a form must send)")
async def list_instruments(request: Request) -> dict:
    return {"instruments": [_instrument(d) for d in _policy(request).catalogue]}


@instruments.get("/{code}", summary="One instrument")
async def get_instrument(code: str, request: Request) -> dict:
    cat = _policy(request).catalogue
    if code not in cat:
        raise NotFound(f"unknown instrument {code!r}", field="code")
    return _instrument(cat.get(code))


def install_error_handlers(app: FastAPI) -> None:
    """Domain refusals → the same JSON shape as the shared errors (``error``, ``detail``, ``field``)."""

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "detail": f"{exc.field}: {exc.reason}", "field": exc.field,
                             "reason": exc.reason}, status_code=exc.status)
