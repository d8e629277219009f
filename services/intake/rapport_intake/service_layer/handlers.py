"""Intake's use cases: plain functions ``handle(cmd, uow, ...)``, one per step.

Each loads the referral (locked), lets the domain decide (refusals raise before any write),
saves, audits in the same transaction, and announces an ending through the outbox.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from rapport_shared.contracts.base import StrictPseudonymousId
from rapport_shared.http.access import ListFilter
from rapport_shared.http.errors import Conflict, Invalid, NotFound
from rapport_shared.uow import UnitOfWork

from ..adapters import audit, contacts, repository
from ..adapters.audit import Actor
from ..domain import commands
from ..domain.model import Referral, Status, contact_record, field_prefix
from ..domain.rules import IntakeRules


@dataclass(frozen=True)
class IntakeConfig:
    rules: IntakeRules
    session_minutes: int
    allow_secondary_focus: bool
    schema: str  # the intake schema (its NOTIFY channel wakes the contacts relay)
    # Rows written before referrals recorded their organisation count as this one's (None: no one's).
    default_organisation: str | None = None


_ORG = TypeAdapter(StrictPseudonymousId)  # a new referral's organisation: the strict format


def _organisation_of(actor: Actor) -> str:
    """A referral belongs to the organisation of whoever opens it: a token without one cannot."""
    if not actor.org:
        raise Invalid("the token names no organisation (claim org): a referral belongs to the organisation that "
                      "opens it", field="org")
    try:
        return _ORG.validate_python(actor.org)
    except ValidationError:
        raise Invalid("the token's organisation is not a pseudonymous code", field="org") from None


async def _load(uow: UnitOfWork, episode_id: UUID) -> Referral:
    referral = await repository.get(uow.conn, episode_id, for_update=True)
    if referral is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    return referral


async def _audit(uow: UnitOfWork, actor: Actor, action: str, r: Referral | None = None, **detail: Any) -> None:
    await audit.record(uow.conn, at=uow.now(), actor=actor, action=action,
                       episode_id=r.episode_id if r else None, person_id=r.person_id if r else None, **detail)


async def _finish(uow: UnitOfWork, r: Referral, was: Status, cfg: IntakeConfig, actor: Actor) -> Referral:
    """Save; if this request ended the referral, announce it (same transaction as the state)."""
    if was == Status.open and r.status == Status.declined:
        event = await uow.emit(r.declined_event())
        r.declined_event_id = UUID(event.id)
        await _audit(uow, actor, "referral.declined", r, reasons=list(r.decline_reasons), event_id=event.id)
    elif was == Status.open and r.status == Status.completed:
        event = await uow.emit(r.completed_event(cfg.rules))
        r.completed_event_id = UUID(event.id)
        await _audit(uow, actor, "referral.completed", r, event_id=event.id)
    await repository.save(uow.conn, r, uow.now())
    return r


# ---- opening and reading -----------------------------------------------------------------

@dataclass(frozen=True)
class Opened:
    referral: Referral
    replayed: bool  # the caller's client_referral_id again: the referral it opened before


async def open_referral(cmd: commands.OpenReferral, uow: UnitOfWork, actor: Actor) -> Opened:
    organisation = _organisation_of(actor)
    referral = Referral(episode_id=uuid.uuid4(), person_id=cmd.person_id, referral_source=cmd.referral_source,
                        target_condition=cmd.target_condition, created_at=uow.now(), organisation_id=organisation,
                        # the opener is the intake clinician when they are one (admins, partner forms: none yet)
                        intake_clinician_id=actor.sub if "intake_clinician" in actor.roles else None)
    if not await repository.add(uow.conn, referral, created_by=actor.sub, client_referral_id=cmd.client_referral_id):
        earlier = await repository.by_client_id(uow.conn, actor.sub, cmd.client_referral_id)
        assert earlier is not None  # the insert met it
        if earlier.organisation_id is not None and earlier.organisation_id != organisation:
            # The same caller id under another organisation: never name (or return) that referral.
            raise Conflict("client_referral_id was already used for a different referral", field="client_referral_id")
        if (earlier.person_id, earlier.referral_source, earlier.target_condition) != (
                cmd.person_id, cmd.referral_source, cmd.target_condition):
            raise Conflict("client_referral_id was already used for a different referral", field="client_referral_id",
                           episode_id=str(earlier.episode_id))
        await _audit(uow, actor, "referral.open_repeated", earlier)
        return Opened(earlier, replayed=True)
    await _audit(uow, actor, "referral.opened", referral, referral_source=cmd.referral_source,
                 target_condition=cmd.target_condition.value)
    return Opened(referral, replayed=False)


async def list_referrals(uow: UnitOfWork, actor: Actor, *, status: str | None, clinician_id: str | None,
                         after: tuple, limit: int, reach: ListFilter | None = None,
                         default_organisation: str | None = None) -> list[Referral]:
    """The worklist, narrowed to what the caller may see (``reach``: its organisation, the
    referrals it is assigned to). Audited like a read: one entry with the filters and the episodes shown."""
    reach = reach or ListFilter()
    referrals = [] if reach.nothing else await repository.page(
        uow.conn, status=status, clinician_id=clinician_id, after=after, limit=limit,
        organisation_id=reach.organisation_id, assigned_to=reach.assigned_to, person_id=reach.person_id,
        default_organisation=default_organisation)
    await audit.record(uow.conn, at=uow.now(), actor=actor, action="referral.listed", status=status,
                       clinician_id=clinician_id, episodes=[str(r.episode_id) for r in referrals])
    return referrals


async def read_referral(uow: UnitOfWork, episode_id: UUID, actor: Actor) -> Referral:
    referral = await repository.get(uow.conn, episode_id)
    if referral is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    await _audit(uow, actor, "referral.read", referral)
    return referral


# ---- the steps, applied to a loaded referral (shared by the step endpoints and completion) ---

async def _consent(uow, r: Referral, cmd: commands.RecordConsent, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_consent(cmd, actor.sub, uow.now())
    await _audit(uow, actor, "consent.recorded", r, given=cmd.given, method=cmd.method.value)


async def _contact(uow, r: Referral, cmd: commands.RecordContact, actor: Actor, cfg: IntakeConfig) -> None:
    # Contact details may change at any time, also after the intake ended.
    record = contact_record(cmd, r.person_id, uow.now())
    await contacts.upsert(uow.conn, record, actor.sub)
    await contacts.queue_publication(uow.conn, r.person_id, cfg.schema)
    await _audit(uow, actor, "contact.recorded", r,
                 fields=sorted(k for k, v in cmd.model_dump(exclude_defaults=True).items() if v is not None))


async def _baseline(uow, r: Referral, cmd: commands.SubmitBaseline, actor: Actor, cfg: IntakeConfig) -> None:
    scored = r.record_baseline(cmd, uow.now())
    await repository.save_baseline(uow.conn, r.episode_id, scored, actor.sub, uow.now())
    await _audit(uow, actor, "baseline.recorded", r, instrument=scored.instrument, flags=scored.flags)


async def _inventory(uow, r: Referral, cmd: commands.RecordInventory, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_inventory(cmd, actor.sub, uow.now())
    await _audit(uow, actor, "inventory.recorded", r, people=len(cmd.people))


async def _focus(uow, r: Referral, cmd: commands.RecordFocus, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_focus(cmd, actor.sub, uow.now(), allow_secondary=cfg.allow_secondary_focus)
    await _audit(uow, actor, "focus.recorded", r, primary=cmd.primary.value,
                 secondary=cmd.secondary.value if cmd.secondary else None)


async def _template(uow, r: Referral, cmd: commands.ChooseTemplate, actor: Actor, cfg: IntakeConfig) -> None:
    had_eligibility = r.eligibility is not None
    r.choose_template(cmd.template_id, cfg.rules)
    await _audit(uow, actor, "template.chosen", r, template_id=cmd.template_id,
                 eligibility_reset=had_eligibility and r.eligibility is None)


async def _clinician(uow, r: Referral, cmd: commands.AssignClinician, actor: Actor, cfg: IntakeConfig) -> None:
    r.assign_clinician(cmd.clinician_id)
    await _audit(uow, actor, "clinician.assigned", r, clinician_id=cmd.clinician_id)


async def _availability(uow, r: Referral, cmd, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_availability(cmd, cfg.session_minutes)
    await _audit(uow, actor, "availability.recorded", r, slots=len(cmd.slots))


async def _eligibility(uow, r: Referral, cmd: commands.RecordEligibility, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_eligibility(cmd, cfg.rules, actor.sub, uow.now())
    await _audit(uow, actor, "eligibility.recorded", r, template_id=r.template_id, eligible=r.eligibility.eligible,
                 reasons=list(r.eligibility.reasons), exclusions=list(cmd.exclusions))


async def _risk_review(uow, r: Referral, cmd: commands.RecordRiskReview, actor: Actor, cfg: IntakeConfig) -> None:
    r.record_risk_review(cmd, cfg.rules, actor.sub, uow.now())
    await repository.add_risk_review(uow.conn, r.episode_id, r.risk_reviews[-1])
    await _audit(uow, actor, "risk_review.recorded", r, decision=cmd.decision.value)


async def _step(step, cmd, uow: UnitOfWork, episode_id: UUID, actor: Actor, cfg: IntakeConfig) -> Referral:
    r = await _load(uow, episode_id)
    was = r.status
    await step(uow, r, cmd, actor, cfg)
    return await _finish(uow, r, was, cfg, actor)


async def record_consent(cmd, uow, episode_id, actor, cfg): return await _step(_consent, cmd, uow, episode_id, actor, cfg)
async def record_contact(cmd, uow, episode_id, actor, cfg): return await _step(_contact, cmd, uow, episode_id, actor, cfg)
async def submit_baseline(cmd, uow, episode_id, actor, cfg): return await _step(_baseline, cmd, uow, episode_id, actor, cfg)
async def record_inventory(cmd, uow, episode_id, actor, cfg): return await _step(_inventory, cmd, uow, episode_id, actor, cfg)
async def record_focus(cmd, uow, episode_id, actor, cfg): return await _step(_focus, cmd, uow, episode_id, actor, cfg)
async def choose_template(cmd, uow, episode_id, actor, cfg): return await _step(_template, cmd, uow, episode_id, actor, cfg)
async def assign_clinician(cmd, uow, episode_id, actor, cfg): return await _step(_clinician, cmd, uow, episode_id, actor, cfg)
async def record_availability(cmd, uow, episode_id, actor, cfg): return await _step(_availability, cmd, uow, episode_id, actor, cfg)
async def record_eligibility(cmd, uow, episode_id, actor, cfg): return await _step(_eligibility, cmd, uow, episode_id, actor, cfg)
async def record_risk_review(cmd, uow, episode_id, actor, cfg): return await _step(_risk_review, cmd, uow, episode_id, actor, cfg)


async def read_contact(uow: UnitOfWork, episode_id: UUID, actor: Actor):
    r = await repository.get(uow.conn, episode_id)
    if r is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    contact = await contacts.get(uow.conn, r.person_id)
    await _audit(uow, actor, "contact.read", r, found=contact is not None)
    return contact


# ---- ending ------------------------------------------------------------------------------

async def complete_intake(cmd: commands.CompleteIntake, uow: UnitOfWork, episode_id: UUID, actor: Actor,
                          cfg: IntakeConfig) -> Referral:
    """Record the parts given in ``cmd`` (in the order below, as their own endpoints would), then
    complete. Completing again returns the first result: same event id, no second event.
    A part that declines the referral (eligibility, a crisis-referral risk review) stops here:
    the decline is kept and the caller learns the referral is declined."""
    r = await _load(uow, episode_id)
    if r.status == Status.completed:
        await _audit(uow, actor, "referral.complete_repeated", r, event_id=str(r.completed_event_id))
        return r
    was = r.status
    r.ensure_open()
    parts = [
        ("consent", _consent, cmd.consent),
        ("contact", _contact, cmd.contact),
        *((f"baseline.{i}", _baseline, b) for i, b in enumerate(cmd.baseline)),
        ("inventory", _inventory, cmd.inventory),
        ("focus", _focus, cmd.focus),
        (None, _template, commands.ChooseTemplate(template_id=cmd.template_id) if cmd.template_id else None),
        (None, _clinician, commands.AssignClinician(clinician_id=cmd.clinician_id) if cmd.clinician_id else None),
        ("availability", _availability, cmd.availability),
        ("risk_review", _risk_review, cmd.risk_review),  # safety before eligibility
        ("eligibility", _eligibility, cmd.eligibility),
    ]
    for prefix, step, part in parts:
        if part is None:
            continue
        if prefix is None:  # a top-level field of the body: the domain already names it
            await step(uow, r, part, actor, cfg)
        else:
            with field_prefix(prefix):
                await step(uow, r, part, actor, cfg)
        if r.status != Status.open:
            return await _finish(uow, r, was, cfg, actor)
    r.complete(uow.now(), cfg.rules)
    return await _finish(uow, r, was, cfg, actor)


async def decline_intake(cmd: commands.Decline, uow: UnitOfWork, episode_id: UUID, actor: Actor,
                         cfg: IntakeConfig) -> Referral:
    r = await _load(uow, episode_id)
    was = r.status
    if not r.decline(cmd.reason_code, cfg.rules, uow.now()):
        await _audit(uow, actor, "referral.decline_repeated", r, event_id=str(r.declined_event_id))
        return r
    return await _finish(uow, r, was, cfg, actor)


# ---- personal data -----------------------------------------------------------------------

async def erase_person(person_id: str, uow: UnitOfWork, actor: Actor, cfg: IntakeConfig) -> dict:
    """Erase a person's contact details and every free text about them in the caller's
    organisation's referrals; publish the tombstone. A person with no referral in the caller's
    organisation answers like an unknown person (404, the same body)."""
    conn = uow.conn
    if not actor.org or not await repository.person_in_organisation(conn, person_id, actor.org,
                                                                     cfg.default_organisation):
        raise NotFound(f"no referral or contact for person {person_id}", field="person_id")
    now = uow.now()
    referrals = await repository.for_person(conn, person_id, for_update=True, organisation_id=actor.org,
                                            default_organisation=cfg.default_organisation)
    for r in referrals:
        r.erase_personal_text(now)
        await repository.save(conn, r, now)
        await _audit(uow, actor, "referral.personal_text_erased", r)
    await repository.erase_review_notes(conn, [r.episode_id for r in referrals])
    had_contact = await contacts.delete(conn, person_id)
    # Crypto-shredding: the person's data key is destroyed here, in the erasure's transaction; the
    # relay publishes its tombstone (rapport.private.person-keys) with the contact's.
    keys_destroyed = await contacts.destroy_keys(conn, person_id, now)
    await contacts.queue_publication(conn, person_id, cfg.schema)  # no contact now → tombstones
    # → a notice on rapport.erasures (outcomes erases its free text)
    await contacts.record_erasure(conn, person_id, actor.sub, now, len(referrals), had_contact, actor.org)
    await audit.record(conn, at=now, actor=actor, action="person.erased", person_id=person_id,
                       referrals=len(referrals), contact=had_contact, keys_destroyed=keys_destroyed)
    return {"person_id": person_id, "erased_at": now.isoformat(), "referrals": len(referrals),
            "contact_erased": had_contact, "tombstone": "queued"}


async def republish_contacts(uow: UnitOfWork, actor: Actor, cfg: IntakeConfig) -> int:
    n = await contacts.queue_all(uow.conn, cfg.schema)
    await audit.record(uow.conn, at=uow.now(), actor=actor, action="contacts.republished", contacts=n)
    return n


async def query_audit(uow: UnitOfWork, reader: Actor, default_organisation: str | None = None,
                      **filters: Any) -> list[dict]:
    """The caller's organisation's trail only (entries on its referrals or by its callers)."""
    entries = await audit.query(uow.conn, organisation_id=reader.org, default_organisation=default_organisation,
                                **filters)
    # Reading the audit log is itself audited (who looked at whose trail).
    await audit.record(uow.conn, at=uow.now(), actor=reader, action="audit.read",
                       episode_id=filters.get("episode_id"), person_id=filters.get("person_id"))
    return entries
