"""Notifier's HTTP API: recipients (admin), on-call rota (admin), alert acknowledgement
(clinician), partner webhook subscriptions (partner), delivery log (admin, clinician).

Who may call what is the access policy (``../access.yaml``), enforced by the shared core before a
handler runs; the handlers scope lists and organisation-owned rows with the ``Grant`` it hands them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.http.access import Grant, ListFilter, current_grant
from rapport_shared.http.errors import Invalid, NotFound
from rapport_shared.http.paging import cursor, parse_cursor
from rapport_shared.uow import run_retrying

from ..domain.rules import (QuietHours, QuietHoursError, WebhookUrlError, WorkingHours, WorkingHoursError,
                            check_webhook_url, new_secret)
from ..service_layer import handlers

router = APIRouter(prefix="/v1")


def _rt(request: Request):
    return request.app.state.runtime


def _check_language(request: Request, language: str) -> None:
    if language not in request.app.state.templates.languages():
        raise Invalid(f"no complete template set for language {language!r} (have: "
                      f"{', '.join(sorted(request.app.state.templates.languages()))})", field="language")


def _org(grant: Grant) -> str:
    """The caller's organisation: the owner of what it creates here (a token without one: 422)."""
    if not grant.principal.org:
        raise Invalid("the token names no organisation (claim org)", field="org")
    return grant.principal.org


def _default(request: Request) -> str | None:
    return request.app.state.settings.default_organisation or None


def _no_clinician(clinician_id: str) -> NotFound:
    # The core's body for a record outside the caller's relationships (http/access.py).
    return NotFound(f"no clinician {clinician_id}", field="clinician_id")


def _check_quiet_hours(raw: dict | None) -> str | None:
    try:
        QuietHours.parse(raw)
    except QuietHoursError as exc:
        raise Invalid(exc.reason, field=exc.field) from None
    return json.dumps(raw) if raw is not None else None


# ---------------------------------------------------------------- clinicians and on-call
class ClinicianIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$")
    language: str = "en"
    channels: list[Literal["email", "sms", "log"]] = Field(default_factory=list, description="in order of preference")
    working_hours: dict | None = Field(
        default=None, description='{"timezone": "Europe/London", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]};'
                                  " a safety alert outside them also pages the on-call clinician(s) at once")


@router.put("/clinicians/{clinician_id}", tags=["recipients"])
async def put_clinician(clinician_id: str, body: ClinicianIn, request: Request,
                        grant: Grant = Depends(current_grant)) -> dict:
    _check_language(request, body.language)
    for ch in body.channels:
        if ch == "email" and not body.email or ch == "sms" and not body.phone:
            raise Invalid(f"channel {ch} needs its address", field="channels")
    try:
        WorkingHours.parse(body.working_hours)
    except WorkingHoursError as exc:
        raise Invalid(exc.reason, field=exc.field) from None
    hours = json.dumps(body.working_hours) if body.working_hours is not None else None
    org = _org(grant)
    async with _rt(request).pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('notifier.clinician:' || $1))", clinician_id)
        owners = await clinician_orgs(conn, clinician_id, _default(request))
        if owners and org not in owners:
            raise _no_clinician(clinician_id)
        await conn.execute(
            "INSERT INTO clinicians (clinician_id, email, phone, language, channels, working_hours, updated_at,"
            " organisation_id) VALUES ($1,$2,$3,$4,$5,$6::jsonb,now(),$7) ON CONFLICT (clinician_id) DO UPDATE SET"
            " email=$2, phone=$3, language=$4, channels=$5, working_hours=$6::jsonb, updated_at=now(), organisation_id=$7",
            clinician_id, body.email, body.phone, body.language, body.channels, hours, org)
    return {"clinician_id": clinician_id, **body.model_dump()}


async def clinician_orgs(conn, clinician_id: str, default: str | None) -> set[str]:
    """The organisation(s) a clinician belongs to here: the one that registered it (a row from
    before organisations: the default organisation), else those of the episodes it treats.
    Empty: known to no organisation (any organisation's admin may register it)."""
    row = await conn.fetchrow("SELECT organisation_id FROM clinicians WHERE clinician_id = $1", clinician_id)
    if row is not None and (row["organisation_id"] or default):
        return {row["organisation_id"] or default}
    rows = await conn.fetch("SELECT DISTINCT COALESCE(organisation_id, $2::text) AS org FROM episodes"
                            " WHERE clinician_id = $1", clinician_id, default)
    return {r["org"] for r in rows if r["org"]}


@router.get("/clinicians", tags=["recipients"])
async def list_clinicians(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    lf = grant.list_filter()
    if lf.nothing:
        return {"clinicians": []}
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM clinicians WHERE ($1::text IS NULL OR COALESCE(organisation_id, $2::text) = $1)"
                                " ORDER BY clinician_id", lf.organisation_id, _default(request))
    return {"clinicians": [{"clinician_id": r["clinician_id"], "email": r["email"], "phone": r["phone"],
                            "language": r["language"], "channels": list(r["channels"]),
                            "working_hours": handlers._j(r["working_hours"])}
                           for r in rows]}


@router.delete("/clinicians/{clinician_id}", tags=["recipients"])
async def erase_clinician(clinician_id: str, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    org = _org(grant)
    async with _rt(request).pool.acquire() as conn, conn.transaction():
        # Another organisation's clinician answers like an unknown one (erased: false).
        n = "DELETE 0"
        if org in await clinician_orgs(conn, clinician_id, _default(request)):
            n = await conn.execute("DELETE FROM clinicians WHERE clinician_id = $1", clinician_id)
    return {"clinician_id": clinician_id, "erased": n != "DELETE 0"}


class OncallSlot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clinician_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    starts_at: datetime
    ends_at: datetime


class OncallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slots: list[OncallSlot]


@router.put("/oncall", tags=["recipients"], summary="Replace the caller's organisation's on-call rota")
async def put_oncall(body: OncallIn, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    for i, s in enumerate(body.slots):
        if s.starts_at.tzinfo is None or s.ends_at.tzinfo is None:
            raise Invalid("times need a UTC offset", field=f"slots.{i}")
        if s.ends_at <= s.starts_at:
            raise Invalid("ends_at must be after starts_at", field=f"slots.{i}.ends_at")
    org = _org(grant)
    async with _rt(request).pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM oncall WHERE COALESCE(organisation_id, $2::text) = $1", org, _default(request))
        for s in body.slots:
            await conn.execute("INSERT INTO oncall (slot_id, clinician_id, starts_at, ends_at, organisation_id)"
                               " VALUES ($1,$2,$3,$4,$5)", uuid.uuid4(), s.clinician_id, s.starts_at, s.ends_at, org)
    return {"slots": len(body.slots)}


@router.get("/oncall", tags=["recipients"])
async def get_oncall(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    lf = grant.list_filter()
    if lf.nothing:
        return {"slots": []}
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM oncall WHERE ($1::text IS NULL OR COALESCE(organisation_id, $2::text) = $1)"
                                " ORDER BY starts_at", lf.organisation_id, _default(request))
    return {"slots": [{"clinician_id": r["clinician_id"], "starts_at": r["starts_at"].isoformat(),
                       "ends_at": r["ends_at"].isoformat()} for r in rows]}


# ---------------------------------------------------------------- patients (local preferences, erasure)
class PatientPreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str | None = None
    quiet_hours: dict | None = None


@router.put("/patients/{person_id}/preferences", tags=["recipients"],
            summary="Language and quiet hours (override what the private contacts topic says)")
async def put_patient_preferences(person_id: str, body: PatientPreferencesIn, request: Request) -> dict:
    if body.language is not None:
        _check_language(request, body.language)
    qh = _check_quiet_hours(body.quiet_hours)
    async with _rt(request).pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO patient_preferences (person_id, language, quiet_hours, updated_at) VALUES ($1,$2,$3::jsonb,now())"
            " ON CONFLICT (person_id) DO UPDATE SET language=$2, quiet_hours=$3::jsonb, updated_at=now()",
            person_id, body.language, qh)
    return {"person_id": person_id, **body.model_dump()}


@router.get("/patients/{person_id}", tags=["recipients"],
            summary="What the notifier holds about a person (audit; contact details included)")
async def get_patient(person_id: str, request: Request) -> dict:
    async with _rt(request).pool.acquire() as conn:
        p = await conn.fetchrow("SELECT * FROM patients WHERE person_id = $1", person_id)
        pref = await conn.fetchrow("SELECT * FROM patient_preferences WHERE person_id = $1", person_id)
    if p is None and pref is None:
        raise NotFound("no contact data held for this person", field="person_id")
    return {"person_id": person_id, "contact": p and {"email": p["email"], "phone": p["phone"],
            "channel_consent": json.loads(p["channel_consent"]), "preferred_channel": p["preferred_channel"]},
            "language": pref and pref["language"]}


@router.delete("/patients/{person_id}", tags=["recipients"],
               summary="Erase the person's contact data here (the tombstone from intake does the same)")
async def erase_patient(person_id: str, request: Request) -> dict:
    async with _rt(request).pool.acquire() as conn, conn.transaction():
        a = await conn.execute("DELETE FROM patients WHERE person_id = $1", person_id)
        b = await conn.execute("DELETE FROM patient_preferences WHERE person_id = $1", person_id)
        # (a patients row deleted does this in a trigger, migration 0008; also without one)
        await conn.execute("UPDATE notifications SET last_error = split_part(error_class(last_error), ':', 1)"
                           " WHERE recipient_ref = 'patient:' || $1 AND last_error IS NOT NULL", person_id)
    return {"person_id": person_id, "erased": a != "DELETE 0" or b != "DELETE 0"}


# ---------------------------------------------------------------- alerts
@router.post("/alerts/{alert_id}/acknowledge", tags=["alerts"], summary="Stop the escalation to on-call")
async def acknowledge(alert_id: uuid.UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    """Only the assigned clinician, or the organisation's on-call clinician or supervisor: the
    policy checked it (access.yaml) and audited the attempt; anyone else got the 404 below."""
    rt = _rt(request)
    who = grant.principal
    # The escalation timer may be firing right now (it locks the timer, then the alert; we lock the
    # alert, then the timer): if Postgres picks us as the deadlock victim, acknowledge again.
    row = await run_retrying(rt.uow, lambda uow: handlers.acknowledge_alert(uow, request.app.state.ctx, alert_id, who.sub))
    if row is None:
        raise NotFound(f"no alert {alert_id}", field="alert_id")  # the core's body (gone since it checked)
    return {"alert_id": str(alert_id), "acknowledged_at": row["acknowledged_at"].isoformat(),
            "acknowledged_by": row["acknowledged_by"], "escalated": row["escalated_at"] is not None}


# ---------------------------------------------------------------- partner webhooks
class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    event_types: list[str] = Field(min_length=1)


# A partner's own subscriptions: its partner id and organisation (rows from before organisations:
# the partner id alone, so they can still be listed and removed; they receive no event).
_OWN_SUB = "(organisation_id = $2::text OR organisation_id IS NULL)"


def _sub(r, secret: str | None = None) -> dict:
    out = {"subscription_id": str(r["subscription_id"]), "url": r["url"], "event_types": list(r["event_types"]),
           "created_at": r["created_at"].isoformat()}
    if secret:
        out["secret"] = secret
    return out


@router.post("/webhooks/subscriptions", tags=["webhooks"], status_code=201,
             summary="Subscribe to event types; the signing secret is returned once")
async def subscribe(body: SubscriptionIn, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    """The subscription belongs to the partner's organisation (token ``org``) and receives only
    events of that organisation's episodes (handlers.fan_out_webhooks)."""
    who = grant.principal
    try:
        s = request.app.state.settings
        check_webhook_url(body.url, allow_http=s.webhook_allow_http, allow_networks=s.webhook_networks())
    except WebhookUrlError as exc:
        raise Invalid(str(exc), field="url") from None
    for i, t in enumerate(body.event_types):
        if t not in EVENT_MODELS:
            raise Invalid(f"unknown event type {t!r}", field=f"event_types.{i}")
    org = _org(grant)
    secret = new_secret()
    async with _rt(request).pool.acquire() as conn:
        r = await conn.fetchrow(
            "INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at, effective_from,"
            " organisation_id) VALUES ($1,$2,$3,$4,$5,now(),$6,$7) RETURNING *", uuid.uuid4(), who.sub, body.url, secret,
            sorted(set(body.event_types)), _rt(request).clock.now(), org)
    return _sub(r, secret)


@router.get("/webhooks/subscriptions", tags=["webhooks"])
async def subscriptions(request: Request, grant: Grant = Depends(current_grant)) -> dict:
    who = grant.principal
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM subscriptions WHERE partner_id = $1 AND deleted_at IS NULL"
                                f" AND {_OWN_SUB} ORDER BY created_at", who.sub, who.org)
    return {"subscriptions": [_sub(r) for r in rows]}


@router.delete("/webhooks/subscriptions/{subscription_id}", tags=["webhooks"])
async def unsubscribe(subscription_id: uuid.UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    who = grant.principal
    async with _rt(request).pool.acquire() as conn:
        r = await conn.fetchrow("UPDATE subscriptions SET deleted_at = now() WHERE subscription_id = $1 AND partner_id = $2"
                                f" AND deleted_at IS NULL AND {_OWN_SUB.replace('$2', '$3')} RETURNING *",
                                subscription_id, who.sub, who.org)
    if r is None:
        raise NotFound("no such subscription", field="subscription_id")
    return {"subscription_id": str(subscription_id), "deleted": True}


# ---------------------------------------------------------------- delivery log
@router.get("/deliveries", tags=["deliveries"], summary="Delivery log (by reference; no contact details)")
async def deliveries(request: Request, grant: Grant = Depends(current_grant), episode_id: uuid.UUID | None = None, recipient_ref: str | None = None,
                     channel: str | None = None, status: str | None = None, kind: str | None = None,
                     limit: int = 1000, after: str | None = None) -> dict:
    """Oldest first; a full page carries ``next``, the ``after`` of the following page (keyset:
    stable while new deliveries are written).

    Only the deliveries of episodes the caller reaches (``grant.list_filter()``): an admin its
    organisation's, a clinician those of the episodes (or alerts) assigned to it, an on-call
    clinician or supervisor its organisation's. A delivery of an episode of no organisation is
    nobody's."""
    limit = min(max(limit, 1), 10000)
    since_at, since_id = parse_cursor(after)
    lf: ListFilter = grant.list_filter()
    if lf.nothing:
        return {"next": None, "deliveries": []}
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT n.* FROM notifications n LEFT JOIN episodes e ON e.episode_id = n.episode_id"
            " LEFT JOIN alerts a ON a.alert_id = n.alert_id"
            " WHERE ($1::uuid IS NULL OR n.episode_id = $1) AND ($2::text IS NULL OR n.recipient_ref = $2)"
            " AND ($3::text IS NULL OR n.channel = $3) AND ($4::text IS NULL OR n.status = $4)"
            " AND ($5::text IS NULL OR n.kind = $5)"
            " AND ($7::timestamptz IS NULL OR (n.created_at, n.notification_id) > ($7, $8::uuid))"
            " AND ($9::text IS NULL OR COALESCE(e.organisation_id, $12::text) = $9)"
            " AND ($10::text IS NULL OR e.clinician_id = $10 OR a.clinician_id = $10)"
            " AND ($11::text IS NULL OR e.person_id = $11)"
            " ORDER BY n.created_at, n.notification_id LIMIT $6",
            episode_id, recipient_ref, channel, status, kind, limit, since_at, since_id,
            lf.organisation_id, lf.assigned_to, lf.person_id, _default(request))
    last = rows[-1] if len(rows) == limit else None
    return {"next": cursor(last["created_at"], last["notification_id"]) if last else None, "deliveries": [
        {"notification_id": str(r["notification_id"]), "idempotency_key": r["idem_key"],
         "cause_event_id": str(r["cause_event_id"]), "episode_id": str(r["episode_id"]), "kind": r["kind"],
         "recipient_ref": r["recipient_ref"], "channel": r["channel"], "language": r["language"], "status": r["status"],
         "attempts": r["attempts"], "in_doubt": r["in_doubt"],
         "in_doubt_resolved": r["in_doubt_resolved"], "in_doubt_resends": r["in_doubt_resends"],
         "status_lookups": r["status_lookups"], "planned_at": r["created_at"].isoformat(),
         "delivered_at": r["finished_at"].isoformat() if r["finished_at"] and r["status"] == "delivered" else None,
         "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None, "error": r["last_error"]}
        for r in rows]}
