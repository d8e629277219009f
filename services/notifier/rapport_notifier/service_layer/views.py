"""Read-only answers for the HTTP API, shaped as it returns them (no contact details in the
delivery log)."""

from __future__ import annotations

import uuid

from rapport_shared.errors import NotFound

from .unit_of_work import NotifierUnitOfWork


def subscription(r: dict, secret: str | None = None) -> dict:
    out = {"subscription_id": str(r["subscription_id"]), "url": r["url"], "event_types": list(r["event_types"]),
           "created_at": r["created_at"].isoformat()}
    if secret:
        out["secret"] = secret
    return out


async def clinicians(uow: NotifierUnitOfWork, organisation_id: str | None) -> list[dict]:
    return [{"clinician_id": r["clinician_id"], "email": r["email"], "phone": r["phone"], "language": r["language"],
             "channels": list(r["channels"]), "working_hours": r["working_hours"]}
            for r in await uow.clinicians.of_organisation(organisation_id, uow.default_org)]


async def oncall(uow: NotifierUnitOfWork, organisation_id: str | None) -> list[dict]:
    return [{"clinician_id": r["clinician_id"], "starts_at": r["starts_at"].isoformat(),
             "ends_at": r["ends_at"].isoformat()}
            for r in await uow.oncall.of_organisation(organisation_id, uow.default_org)]


async def patient(uow: NotifierUnitOfWork, person_id: str) -> dict:
    p = await uow.patients.get(person_id)
    pref = await uow.patients.preferences(person_id)
    if p is None and pref is None:
        raise NotFound("no contact data held for this person", field="person_id")
    return {"person_id": person_id, "contact": p and {"email": p["email"], "phone": p["phone"],
            "channel_consent": p["channel_consent"], "preferred_channel": p["preferred_channel"]},
            "language": pref and pref["language"]}


async def subscriptions(uow: NotifierUnitOfWork, partner_id: str, org: str | None) -> list[dict]:
    return [subscription(r) for r in await uow.subscriptions.of_partner(partner_id, org)]


async def deliveries(uow: NotifierUnitOfWork, *, limit: int, after, episode_id: uuid.UUID | None,
                     recipient_ref: str | None, channel: str | None, status: str | None, kind: str | None,
                     organisation_id: str | None, assigned_to: str | None,
                     person_id: str | None) -> tuple[list[dict], tuple | None]:
    """(the page, oldest first; the keyset of its last row when the page is full, else None)."""
    rows = await uow.deliveries.log(episode_id=episode_id, recipient_ref=recipient_ref, channel=channel, status=status,
                                    kind=kind, limit=limit, after=after, organisation_id=organisation_id,
                                    assigned_to=assigned_to, person_id=person_id, default_org=uow.default_org)
    last = rows[-1] if len(rows) == limit else None
    return [
        {"notification_id": str(r["notification_id"]), "idempotency_key": r["idem_key"],
         "cause_event_id": str(r["cause_event_id"]), "episode_id": str(r["episode_id"]), "kind": r["kind"],
         "recipient_ref": r["recipient_ref"], "channel": r["channel"], "language": r["language"], "status": r["status"],
         "attempts": r["attempts"], "in_doubt": r["in_doubt"],
         "in_doubt_resolved": r["in_doubt_resolved"], "in_doubt_resends": r["in_doubt_resends"],
         "status_lookups": r["status_lookups"],
         # what a questionnaire request or reminder asks for (codes; None for other kinds)
         "instruments": (r["params"] or {}).get("instrument_codes"),
         "planned_at": r["created_at"].isoformat(),
         "delivered_at": r["finished_at"].isoformat() if r["finished_at"] and r["status"] == "delivered" else None,
         "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None, "error": r["last_error"]}
        for r in rows], (last["created_at"], last["notification_id"]) if last else None
