"""Outcomes' HTTP API (thin: a command for the message bus, or a view, and the answer's status)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from rapport_shared.contracts.outcomes import AlertKind
from rapport_shared.errors import Invalid
from rapport_shared.faults import crash_point
from rapport_shared.http.access import Grant, current_grant
from rapport_shared.inputs import Timestamp

from ..domain.commands import Actor, RecordResolution, ResolveAlert, SubmitQuestionnaire, SubmitScores
from ..domain.policy import OutcomesPolicy
from ..service_layer import views
from ..service_layer.handlers import Accepted
from ..service_layer.unit_of_work import OutcomesUnitOfWork, policy_of

# Who may call what, on which records, is the access policy's (../access.yaml), enforced app-wide
# before a handler runs: a record outside the caller's relationships answers like a missing one.
episodes = APIRouter(prefix="/v1/episodes", tags=["scores"])
alerts = APIRouter(prefix="/v1/alerts", tags=["alerts"])
reports = APIRouter(prefix="/v1/reports", tags=["reports"])
instruments = APIRouter(prefix="/v1/instruments", tags=["instruments"])
routers = [episodes, alerts, reports, instruments]


class FhirResponse(JSONResponse):
    """A FHIR resource as JSON: the media type FHIR defines (the document declares it)."""

    media_type = "application/fhir+json"


def _policy(request: Request) -> OutcomesPolicy:
    return policy_of(request.app.state.runtime.settings)


def _actor(grant: Grant) -> Actor:
    return Actor(sub=grant.principal.sub, roles=frozenset(grant.principal.roles))


def _holds(grant: Grant, role: str) -> bool:
    """Whether the caller reaches this route's record *as* ``role`` (a token may carry several
    roles: a partner role must not pass on a clinician's view)."""
    return grant.scope is not None and role in grant.roles


@asynccontextmanager
async def _reading(request: Request) -> AsyncIterator[OutcomesUnitOfWork]:
    """The repositories on a pooled connection for a read: no transaction, nothing to commit."""
    runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn:
        yield runtime.make_uow(conn, None)


# ---- submissions and scores -----------------------------------------------------------------

@episodes.post("/{episode_id}/submissions", status_code=201, summary="Submit a questionnaire (scored here)",
               responses={200: {"description": "the same client_submission_id again: the stored submission"},
                          404: {"description": "unknown episode"}, 409: {"description": "client id reused"},
                          422: {"description": "refused; `field` names what is wrong; nothing stored"}})
async def submit(episode_id: UUID, cmd: SubmitScores, request: Request, grant: Grant = Depends(current_grant)):
    accepted: Accepted = await request.app.state.runtime.bus.handle(
        SubmitQuestionnaire(episode_id=episode_id, actor=_actor(grant), scores=cmd))
    # Committed (score, alerts and their events) but not yet published: the crash test's point.
    crash_point("outcomes.submission.after_commit")
    body = {**views.submission_view(accepted.submission, _policy(request).catalogue), "replayed": accepted.replayed}
    return JSONResponse(body, status_code=200 if accepted.replayed else 201)


@episodes.get("/{episode_id}/scores", summary="An episode's score history per instrument, with bands")
async def scores(episode_id: UUID, request: Request) -> dict:
    async with _reading(request) as uow:
        return await views.scores(uow, episode_id)


@episodes.get("/{episode_id}/submissions/{submission_id}", summary="One submission with its answers")
async def submission(episode_id: UUID, submission_id: UUID, request: Request) -> dict:
    async with _reading(request) as uow:
        return await views.submission(uow, episode_id, submission_id)


@episodes.get("/{episode_id}/outcome", summary="The end-of-course evaluation")
async def outcome(episode_id: UUID, request: Request) -> dict:
    async with _reading(request) as uow:
        return await views.outcome(uow, episode_id)


@episodes.get("/{episode_id}/fhir", summary="FHIR R4 Bundle: the scores, or (content=episode) the episode's record",
              description="content=results (default): a QuestionnaireResponse + total Observation per submission. "
                          "content=episode: the whole record: EpisodeOfCare, Condition, Goal (focus problem area), "
                          "CarePlan (course and phases, sessions as activities), Appointment / Encounter per "
                          "session, the scores, item Observations (PHQ-9 item 9), change classifications and the "
                          "code systems Rapport publishes. A clinician of the episode gets the answers; a partner "
                          "of its organisation gets no QuestionnaireResponse and no item Observation: coded facts, "
                          "never item answers.",
              response_class=FhirResponse,
              responses={200: {"description": "a FHIR R4 Bundle (type collection)",
                               "content": {"application/fhir+json": {"schema": {"type": "object"}}}}})
async def fhir_export(episode_id: UUID, request: Request, grant: Grant = Depends(current_grant),
                      content: Literal["results", "episode"] = "results") -> FhirResponse:
    async with _reading(request) as uow:
        bundle = await views.fhir_bundle(uow, episode_id, answers=_holds(grant, "clinician"), content=content)
    return FhirResponse(bundle)


@episodes.get("/{episode_id}/alerts", summary="An episode's alerts, open and resolved")
async def episode_alerts(episode_id: UUID, request: Request) -> dict:
    async with _reading(request) as uow:
        return await views.episode_alerts(uow, episode_id)


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
    async with _reading(request) as uow:
        found = await views.alerts(uow, clinician_id=clinician_id, status=None if status == "all" else status,
                                   kind=kind.value if kind else None, limit=limit, scope=grant.list_filter())
    return {"clinician_id": clinician_id, "status": status, "alerts": found}


@alerts.get("/{alert_id}", summary="One alert with its linked submissions and audit trail")
async def get_alert(alert_id: UUID, request: Request) -> dict:
    async with _reading(request) as uow:
        return await views.alert(uow, alert_id)


@alerts.post("/{alert_id}/resolve", summary="Record a clinician's resolution of an open alert",
             responses={200: {"description": "resolved (or the same resolution again)"},
                        409: {"description": "already resolved differently"}})
async def resolve(alert_id: UUID, cmd: ResolveAlert, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    row, replayed = await request.app.state.runtime.bus.handle(
        RecordResolution(alert_id=alert_id, actor=_actor(grant), resolution=cmd))
    return {**views.alert_view(row), "replayed": replayed}


# ---- reports --------------------------------------------------------------------------------

@reports.get("/cohort", summary="Cohort outcomes per template or per clinician (NHS Talking Therapies style)",
             description="Over the episodes the caller reaches: an admin's or supervisor's organisation, a "
                         "clinician's own episodes.")
async def cohort_report(request: Request, grant: Grant = Depends(current_grant),
                        group_by: Literal["template", "clinician"] = "template",
                        template_id: str | None = None, clinician_id: str | None = None,
                        ended_from: Timestamp | None = None, ended_to: Timestamp | None = None) -> dict:
    for name, t in (("ended_from", ended_from), ("ended_to", ended_to)):
        if t is not None and t.tzinfo is None:
            raise Invalid("must carry a UTC offset", field=name)
    async with _reading(request) as uow:
        return await views.cohort_report(uow, group_by=group_by, template_id=template_id, clinician_id=clinician_id,
                                         ended_from=ended_from, ended_to=ended_to, scope=grant.list_filter())


# ---- the catalogue --------------------------------------------------------------------------

@instruments.get("", summary="The instrument catalogue (what a form must send)")
async def list_instruments(request: Request) -> dict:
    return views.instruments(_policy(request))


@instruments.get("/{code}", summary="One instrument")
async def get_instrument(code: str, request: Request) -> dict:
    return views.instrument(_policy(request), code)
