"""Notifier's HTTP API: recipients (admin), on-call rota (admin), alert acknowledgement
(clinician), partner webhook subscriptions (partner), delivery log (admin, clinician).

Who may call what is the access policy (``../access.yaml``), enforced by the shared core before a
route runs; a route turns the request into a command for the bus (``service_layer/handlers.py``)
or asks a view (``service_layer/views.py``), scoping lists and organisation-owned rows with the
``Grant`` the core hands it."""

from __future__ import annotations

import uuid
from typing import Annotated, Iterable, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.hours import DAYS
from rapport_shared.http.access import Grant, ListFilter, current_grant
from rapport_shared.http.paging import after_query, cursor, parse_cursor
from rapport_shared.inputs import Timestamp, TimeZoneName, known

from ..domain import commands
from ..domain.rules import complete_languages
from ..service_layer import views

router = APIRouter(prefix="/v1")


def _rt(request: Request):
    return request.app.state.runtime


async def _handle(request: Request, cmd: object):
    return await _rt(request).bus.handle(cmd)


# The shapes rapport_shared.hours parses (QuietHours.parse, WorkingHours.parse), declared so the
# document says what is accepted; the handlers still parse them (start before end and the like).
HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
HHMM_OR_24 = Annotated[str, StringConstraints(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
# Languages with a complete template set (the document lists them; the handlers refuse others).
Language = Annotated[str, known("languages")]


class WorkingSlotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    day: Literal[DAYS]  # type: ignore[valid-type]
    start: HHMM
    end: HHMM_OR_24 = Field(description="after start (a slot lies within one day); 24:00 for midnight")


class WorkingHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: TimeZoneName
    slots: list[WorkingSlotIn] = Field(min_length=1)


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: HHMM
    end: HHMM = Field(description="differs from start; may wrap midnight")
    timezone: TimeZoneName


# ---------------------------------------------------------------- clinicians and on-call
class ClinicianIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    language: Language = "en"
    channels: list[Literal["email", "sms", "log"]] = Field(default_factory=list, description="in order of preference")
    working_hours: WorkingHoursIn | None = Field(
        default=None, description='{"timezone": "Europe/London", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]};'
                                  " a safety alert outside them also pages the on-call clinician(s) at once")


@router.put("/clinicians/{clinician_id}", tags=["recipients"])
async def put_clinician(clinician_id: str, body: ClinicianIn, request: Request,
                        grant: Grant = Depends(current_grant)) -> dict:
    hours = body.working_hours.model_dump() if body.working_hours is not None else None
    await _handle(request, commands.PutClinician(
        clinician_id=clinician_id, org=grant.principal.org, email=body.email, phone=body.phone, language=body.language,
        channels=tuple(body.channels), working_hours=hours))
    return {"clinician_id": clinician_id, **body.model_dump()}


@router.get("/clinicians", tags=["recipients"])
async def list_clinicians(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    lf = grant.list_filter()
    if lf.nothing:
        return {"clinicians": []}
    async with _rt(request).uow() as uow:
        return {"clinicians": await views.clinicians(uow, lf.organisation_id)}


@router.delete("/clinicians/{clinician_id}", tags=["recipients"])
async def erase_clinician(clinician_id: str, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    # Another organisation's clinician answers like an unknown one (erased: false).
    erased = await _handle(request, commands.EraseClinician(clinician_id=clinician_id, org=grant.principal.org))
    return {"clinician_id": clinician_id, "erased": erased}


class OncallSlot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clinician_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    starts_at: Timestamp
    ends_at: Timestamp = Field(description="after starts_at")


class OncallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slots: list[OncallSlot]


@router.put("/oncall", tags=["recipients"], summary="Replace the caller's organisation's on-call rota")
async def put_oncall(body: OncallIn, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    slots = tuple(commands.OncallSlot(s.clinician_id, s.starts_at, s.ends_at) for s in body.slots)
    return {"slots": await _handle(request, commands.ReplaceOncall(org=grant.principal.org, slots=slots))}


@router.get("/oncall", tags=["recipients"])
async def get_oncall(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    lf = grant.list_filter()
    if lf.nothing:
        return {"slots": []}
    async with _rt(request).uow() as uow:
        return {"slots": await views.oncall(uow, lf.organisation_id)}


# ---------------------------------------------------------------- patients (local preferences, erasure)
class PatientPreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: Language | None = None
    quiet_hours: QuietHoursIn | None = None


@router.put("/patients/{person_id}/preferences", tags=["recipients"],
            summary="Language and quiet hours (override what the private contacts topic says)")
async def put_patient_preferences(person_id: str, body: PatientPreferencesIn, request: Request) -> dict:
    quiet = body.quiet_hours.model_dump() if body.quiet_hours is not None else None
    await _handle(request, commands.SetPatientPreferences(person_id=person_id, language=body.language,
                                                          quiet_hours=quiet))
    return {"person_id": person_id, **body.model_dump()}


@router.get("/patients/{person_id}", tags=["recipients"],
            summary="What the notifier holds about a person (audit; contact details included)")
async def get_patient(person_id: str, request: Request) -> dict:
    async with _rt(request).uow() as uow:
        return await views.patient(uow, person_id)


@router.delete("/patients/{person_id}", tags=["recipients"],
               summary="Erase the person's contact data here (the tombstone from intake does the same)")
async def erase_patient(person_id: str, request: Request) -> dict:
    return {"person_id": person_id, "erased": await _handle(request, commands.ErasePatient(person_id=person_id))}


# ---------------------------------------------------------------- alerts
@router.post("/alerts/{alert_id}/acknowledge", tags=["alerts"], summary="Stop the escalation to on-call")
async def acknowledge(alert_id: uuid.UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    """Only the assigned clinician, or the organisation's on-call clinician or supervisor: the
    policy checked it (access.yaml) and audited the attempt; anyone else got the 404 below."""
    # The escalation timer may be firing right now (it locks the timer, then the alert; we lock the
    # alert, then the timer): if Postgres picks us as the deadlock victim, the bus acknowledges again.
    row = await _handle(request, commands.AcknowledgeAlert(alert_id=alert_id, by=grant.principal.sub))
    return {"alert_id": str(alert_id), "acknowledged_at": row["acknowledged_at"].isoformat(),
            "acknowledged_by": row["acknowledged_by"], "escalated": row["escalated_at"] is not None}


# ---------------------------------------------------------------- partner webhooks
class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="https://, a host name or a public address (private, loopback and other "
                                 "non-global addresses are refused, as is localhost)",
                     json_schema_extra={"pattern": r"^https://[^/?#@\s]+([/?#]\S*)?$"})
    event_types: list[Annotated[str, Field(json_schema_extra={"enum": sorted(EVENT_MODELS)})]] = Field(min_length=1)


@router.post("/webhooks/subscriptions", tags=["webhooks"], status_code=201,
             summary="Subscribe to event types; the signing secret is returned once")
async def subscribe(body: SubscriptionIn, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    """The subscription belongs to the partner's organisation (token ``org``) and receives only
    events of that organisation's episodes (``notifications.fan_out_webhooks``)."""
    who = grant.principal
    row, secret = await _handle(request, commands.Subscribe(partner_id=who.sub, org=who.org, url=body.url,
                                                            event_types=tuple(body.event_types)))
    return views.subscription(row, secret)


@router.get("/webhooks/subscriptions", tags=["webhooks"])
async def subscriptions(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    who = grant.principal
    async with _rt(request).uow() as uow:
        return {"subscriptions": await views.subscriptions(uow, who.sub, who.org)}


@router.delete("/webhooks/subscriptions/{subscription_id}", tags=["webhooks"])
async def unsubscribe(subscription_id: uuid.UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    who = grant.principal
    await _handle(request, commands.Unsubscribe(subscription_id=subscription_id, partner_id=who.sub, org=who.org))
    return {"subscription_id": str(subscription_id), "deleted": True}


# ---------------------------------------------------------------- delivery log
@router.get("/deliveries", tags=["deliveries"], summary="Delivery log (by reference; no contact details)")
async def deliveries(request: Request, grant: Grant = Depends(current_grant), episode_id: uuid.UUID | None = None, recipient_ref: str | None = None,
                     channel: str | None = None, status: str | None = None, kind: str | None = None,
                     limit: int = 1000, after: str | None = after_query()) -> dict:
    """Oldest first; a full page carries ``next``, the ``after`` of the following page (keyset:
    stable while new deliveries are written).

    Only the deliveries of episodes the caller reaches (``grant.list_filter()``): an admin its
    organisation's, a clinician those of the episodes (or alerts) assigned to it, an on-call
    clinician or supervisor its organisation's. A delivery of an episode of no organisation is
    nobody's."""
    limit = min(max(limit, 1), 10000)
    after_key = parse_cursor(after)
    lf: ListFilter = grant.list_filter()
    if lf.nothing:
        return {"next": None, "deliveries": []}
    async with _rt(request).uow() as uow:
        page, last = await views.deliveries(uow, limit=limit, after=after_key, episode_id=episode_id,
                                            recipient_ref=recipient_ref, channel=channel, status=status, kind=kind,
                                            organisation_id=lf.organisation_id, assigned_to=lf.assigned_to,
                                            person_id=lf.person_id)
    return {"next": cursor(*last) if last else None, "deliveries": page}


def openapi_values(settings) -> dict[str, Iterable[str]]:
    """The languages with a complete template set, listed in the OpenAPI document."""
    return {"languages": complete_languages(settings.templates_dir)}
