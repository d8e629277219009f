"""Intake's HTTP API (thin: validate, build a command for ``runtime.bus`` or read a view, shape the answer).

Who may call what, on which referrals, is the access policy (``access.yaml``, enforced app-wide
before any handler runs; architecture.md "Who may see what"): ``intake_clinician`` does
everything clinical on the referrals it is assigned to (or its organisation's, with a care-team
duty); a ``partner`` system (a partner clinic's intake form) may open and fill in its own
organisation's referrals and gets back only the minimal partner view; ``admin`` acts on its
organisation's records (erasure, the audit log) and republishes contacts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from rapport_shared.contracts import PseudonymousId
from rapport_shared.errors import Conflict, NotFound
from rapport_shared.http.access import AccessConfig, Grant, RecordScope, current_grant, write_audit
from rapport_shared.http.auth import Principal, Role
from rapport_shared.http.paging import after_query, cursor, parse_cursor
from rapport_shared.inputs import Timestamp

from ..domain import commands
from ..domain.commands import Actor
from ..domain.rules import IntakeRules
from ..service_layer import views
from ..settings import IntakeSettings
from .responses import (AuditPage, ContactView, ErasureView, Problem, ReferralPage, ReferralPartnerView, ReferralView,
                        partner_view, referral_summary, referral_view)

# What a referral route answers: the whole record, or to a partner system the minimal view.
AnyView = ReferralView | ReferralPartnerView

REFUSALS = {
    404: {"model": Problem, "description": "no such referral"},
    409: {"model": Problem, "description": "the referral's state refuses this (completed, declined, or missing parts)"},
    422: {"model": Problem, "description": "bad input: names the field and the reason; nothing was written"},
}

router = APIRouter(prefix="/v1", responses=REFUSALS)


def _actor(p: Principal) -> Actor:
    return Actor(p.sub, tuple(sorted(p.roles)), p.org)


def _settings(request: Request) -> IntakeSettings:
    return request.app.state.runtime.settings


def _rules(request: Request) -> IntakeRules:
    return _settings(request).rules()


async def _handle(request: Request, cmd):
    """Run a command in its own unit of work (the bus commits it, or rolls it back on a refusal)."""
    return await request.app.state.runtime.bus.handle(cmd)


async def _read(request: Request, view, *args, **kwargs):
    """Run an (audited) read in a unit of work."""
    async with request.app.state.runtime.uow() as uow:
        return await view(uow, *args, **kwargs)


def _sees_whole_record(grant: Grant) -> bool:
    """True when a role other than ``partner`` admits the caller to this record on this route;
    a caller admitted only as a partner gets the minimal view (never notes, inventory,
    rationale, answers or contact details)."""
    return any(role != Role.partner for role in grant.roles)


def _view(request: Request, grant: Grant, referral) -> AnyView:
    rules = _rules(request)
    return referral_view(referral, rules) if _sees_whole_record(grant) else partner_view(referral, rules)


async def _run(request: Request, command: type[commands.ReferralCommand], body, episode_id: UUID,
               grant: Grant) -> AnyView:
    """A command on one referral, answered with the referral as the caller may see it."""
    referral = await _handle(request, command(episode_id=episode_id, actor=_actor(grant.principal), body=body))
    return _view(request, grant, referral)


# ---- referrals ---------------------------------------------------------------------------

@router.post("/referrals", status_code=201, response_model=AnyView, tags=["referrals"],
             summary="Open a referral (starts an episode). It belongs to the caller's organisation (token claim "
                     "`org`; a token without one is refused, 422 naming `org`); an intake clinician opening it is "
                     "its intake clinician",
             responses={200: {"description": "the same client_referral_id again: the referral it opened"},
                        409: {"description": "client_referral_id reused for a different referral"}})
async def open_referral(body: commands.OpenReferral, request: Request, response: Response,
                        grant: Grant = Depends(current_grant)) -> AnyView:
    opened = await _handle(request, commands.OpenReferralCommand(actor=_actor(grant.principal), body=body))
    if opened.replayed:
        response.status_code = 200
    return _view(request, grant, opened.referral)


@router.get("/referrals", response_model=ReferralPage, tags=["referrals"],
            summary="The worklist: referrals oldest first, with what completion still needs (audited read)")
async def list_referrals(request: Request, grant: Grant = Depends(current_grant),
                         status: Literal["open", "completed", "declined"] | None = None,
                         clinician_id: PseudonymousId | None = None, limit: int = Query(50, ge=1, le=500),
                         after: str | None = after_query()) -> ReferralPage:
    referrals = await _read(request, views.referrals, _actor(grant.principal), status=status,
                            clinician_id=clinician_id, after=parse_cursor(after), limit=limit,
                            reach=grant.list_filter())
    last = referrals[-1] if len(referrals) == limit else None
    rules = _rules(request)
    return ReferralPage(referrals=[referral_summary(r, rules) for r in referrals],
                        next=cursor(last.created_at, last.episode_id) if last else None)


@router.get("/referrals/{episode_id}", response_model=AnyView, tags=["referrals"],
            summary="The referral's intake record and what completion still needs (audited read; a partner gets "
                    "the minimal view)")
async def get_referral(episode_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> AnyView:
    referral = await _read(request, views.referral, episode_id, _actor(grant.principal))
    return _view(request, grant, referral)


@router.put("/referrals/{episode_id}/consent", response_model=AnyView, tags=["assessment"], summary="Record consent")
async def put_consent(episode_id: UUID, body: commands.RecordConsent, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordConsentCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/contact", response_model=AnyView, tags=["personal data"],
            summary="Record the person's contact details and channel preferences (personal data: intake's schema "
                    "and the encrypted private contacts topic only; allowed after the intake ended too)")
async def put_contact(episode_id: UUID, body: commands.RecordContact, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordContactCommand, body, episode_id, grant)


@router.get("/referrals/{episode_id}/contact", response_model=ContactView, tags=["personal data"],
            summary="The person's contact details (audited read)")
async def get_contact(episode_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> ContactView:
    contact = await _read(request, views.contact, episode_id, _actor(grant.principal))
    return ContactView(episode_id=str(episode_id), contact=contact)


@router.post("/referrals/{episode_id}/baseline", response_model=AnyView, tags=["assessment"],
             summary="Submit one baseline questionnaire (item answers; scored with the instrument catalogue). "
                     "Submitting an instrument again replaces its earlier baseline.")
async def post_baseline(episode_id: UUID, body: commands.SubmitBaseline, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.SubmitBaselineCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/inventory", response_model=AnyView, tags=["assessment"],
            summary="Record the interpersonal inventory (key relationships)")
async def put_inventory(episode_id: UUID, body: commands.RecordInventory, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordInventoryCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/focus", response_model=AnyView, tags=["assessment"],
            summary="Record the provisional focus problem area (primary, optional secondary) with its rationale")
async def put_focus(episode_id: UUID, body: commands.RecordFocus, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordFocusCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/template", response_model=AnyView, tags=["assessment"],
            summary="Choose the programme template (changing it clears an eligibility decided for another)")
async def put_template(episode_id: UUID, body: commands.ChooseTemplate, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.ChooseTemplateCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/clinician", response_model=AnyView, tags=["assessment"],
            summary="Assign the clinician")
async def put_clinician(episode_id: UUID, body: commands.AssignClinician, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.AssignClinicianCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/availability", response_model=AnyView, tags=["assessment"],
            summary="Record the patient's weekly availability (must hold a weekly session)")
async def put_availability(episode_id: UUID, body: commands.RecordAvailability, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordAvailabilityCommand, body, episode_id, grant)


@router.put("/referrals/{episode_id}/eligibility", response_model=AnyView, tags=["assessment"],
            summary="Record eligibility (age, exclusions present), decided against the chosen template; "
                    "an exclusion or a failed age rule declines the referral")
async def put_eligibility(episode_id: UUID, body: commands.RecordEligibility, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordEligibilityCommand, body, episode_id, grant)


@router.post("/referrals/{episode_id}/risk-review", response_model=AnyView, tags=["safety"],
             summary="Record a clinician's risk review (needed before completion when a baseline safety item is "
                     "positive); 'decline_crisis_referral' declines the referral")
async def post_risk_review(episode_id: UUID, body: commands.RecordRiskReview, request: Request,
                           grant: Grant = Depends(current_grant)):
    return await _run(request, commands.RecordRiskReviewCommand, body, episode_id, grant)


@router.post("/referrals/{episode_id}/complete", response_model=AnyView, tags=["referrals"],
             summary="Complete the intake (optionally recording the parts given in the body first); emits "
                     "rapport.intake.completed.v1. Refused with 409 listing what is missing; idempotent.")
async def complete(episode_id: UUID, body: commands.CompleteIntake, request: Request,
                   grant: Grant = Depends(current_grant)):
    if body.risk_review is not None and Role.intake_clinician.value not in grant.principal.roles:
        raise HTTPException(status_code=403, detail="a risk review needs the role intake_clinician")
    view = await _run(request, commands.CompleteIntakeCommand, body, episode_id, grant)
    if view.status == "declined":  # a part of the body declined it; that decision was kept
        raise Conflict(f"the referral was declined ({', '.join(view.decline_reasons)}) and can never start a course",
                       field="status", episode_status=view.status, decline_reasons=view.decline_reasons,
                       declined_event_id=view.declined_event_id)
    return view


@router.post("/referrals/{episode_id}/decline", response_model=AnyView, tags=["referrals"],
             summary="Decline the referral by hand (withdrawn, referred elsewhere); emits rapport.intake.declined.v1")
async def decline(episode_id: UUID, body: commands.Decline, request: Request, grant: Grant = Depends(current_grant)):
    return await _run(request, commands.DeclineCommand, body, episode_id, grant)


@router.get("/intake-rules", tags=["referrals"], summary="Templates, age rules, exclusions, required baseline, decline reasons")
async def intake_rules(request: Request) -> dict:
    s = _settings(request)
    return {**s.rules().model_dump(mode="json"), "session_minutes": s.session_minutes,
            "allow_secondary_focus": s.allow_secondary_focus}


# ---- personal data and audit (admin) -----------------------------------------------------

@router.post("/persons/{person_id}/erasure", response_model=ErasureView, tags=["personal data"],
             summary="Erase a person's contact details and every free text about them; publishes the tombstone")
async def erase(person_id: PseudonymousId, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    """Admin of an organisation: erases what that organisation holds about the person (access.yaml's
    note). A person with no referral in the caller's organisation is 404, the same body as an
    unknown person; every attempt leaves an access-audit row (decision allowed or not_found)."""
    try:
        erased = await _handle(request, commands.ErasePersonCommand(person_id=person_id,
                                                                    actor=_actor(grant.principal)))
    except NotFound:
        await _audit_erasure(request, grant, person_id, "not_found", 404)
        raise
    await _audit_erasure(request, grant, person_id, "allowed", 200)
    return erased


async def _audit_erasure(request: Request, grant: Grant, person_id: str, decision: str, status: int) -> None:
    # The route's row names no record (its scope is the person's referrals in the caller's
    # organisation, decided in the handler), so this route writes the access-audit row itself.
    access: AccessConfig = request.app.state.access
    rule = replace(access.policy.rule(request.method, request.scope["route"].path), record="person_id")
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn:
        await write_audit(conn, access.audit_table, at=rt.clock.now(), principal=grant.principal, request=request,
                          rule=rule, record_id=person_id, decision=decision, status=status,
                          scope=RecordScope(organisation_id=grant.principal.org, person_id=person_id)
                          if decision == "allowed" else None)


@router.post("/admin/contacts/republish", tags=["personal data"],
             summary="Republish every contact on the private topic (after rotating the contacts key)")
async def republish(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    n = await _handle(request, commands.RepublishContactsCommand(actor=_actor(grant.principal)))
    return {"queued": n}


@router.get("/audit", response_model=AuditPage, tags=["audit"],
            summary="Who read or changed which referral, when (the caller's organisation's trail; audited read)")
async def get_audit(request: Request, grant: Grant = Depends(current_grant), episode_id: UUID | None = None,
                    person_id: str | None = None, actor: str | None = None, action: str | None = None,
                    since: Timestamp | None = None, after_seq: int = Query(0, ge=0, le=2**63 - 1),
                    limit: int = Query(100, ge=1, le=1000)) -> AuditPage:
    entries = await _read(request, views.audit_trail, _actor(grant.principal), episode_id=episode_id,
                          person_id=person_id, actor=actor, action=action, since=since, after_seq=after_seq,
                          limit=limit)
    return AuditPage(entries=entries, next_after_seq=entries[-1]["seq"] if len(entries) == limit else None)


def openapi_values(settings: IntakeSettings) -> dict[str, Iterable[str]]:
    """The codes of the configured rules, listed as enums in the OpenAPI document (the bodies mark
    them with ``rapport_shared.inputs.known``)."""
    rules = settings.rules()
    return {"templates": list(rules.templates), "decline_reasons": list(rules.decline_reasons),
            "exclusions": [e.code for e in rules.exclusions]}
