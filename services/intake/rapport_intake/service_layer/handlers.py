"""Intake's use cases: ``@handlers.handles(Command) async def fn(cmd, uow)``, one per command.

Each loads the referral (locked), lets the domain decide (refusals raise before any write),
saves, audits in the same transaction, and announces an ending through the outbox. The HTTP
edge runs them through ``runtime.bus.handle(cmd)``; audited reads are in ``views``.
Configuration (rules, session length, ...) is ``uow.settings`` (``IntakeSettings``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from rapport_shared.contracts.base import StrictPseudonymousId
from rapport_shared.errors import Conflict, Invalid, NotFound
from rapport_shared.messagebus import HandlerRegistry

from ..domain import commands
from ..domain.commands import Actor
from ..domain.model import Referral, Status, contact_record, field_prefix
from .unit_of_work import IntakeUnitOfWork

handlers: HandlerRegistry[IntakeUnitOfWork] = HandlerRegistry()

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


async def _load(uow: IntakeUnitOfWork, episode_id: UUID) -> Referral:
    referral = await uow.referrals.get(episode_id, for_update=True)
    if referral is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    return referral


async def audit(uow: IntakeUnitOfWork, actor: Actor, action: str, r: Referral | None = None, **detail: Any) -> None:
    """An audit entry about ``r`` (its episode and person), in the unit's transaction."""
    await uow.audit.record(at=uow.now(), actor=actor, action=action,
                           episode_id=r.episode_id if r else None, person_id=r.person_id if r else None, **detail)


async def _finish(uow: IntakeUnitOfWork, r: Referral, was: Status, actor: Actor) -> Referral:
    """Save; if this request ended the referral, announce it (same transaction as the state)."""
    if was == Status.open and r.status == Status.declined:
        event = await uow.emit(r.declined_event())
        r.declined_event_id = UUID(event.id)
        await audit(uow, actor, "referral.declined", r, reasons=list(r.decline_reasons), event_id=event.id)
    elif was == Status.open and r.status == Status.completed:
        event = await uow.emit(r.completed_event(uow.settings.rules()))
        r.completed_event_id = UUID(event.id)
        await audit(uow, actor, "referral.completed", r, event_id=event.id)
    await uow.referrals.save(r, uow.now())
    return r


# ---- opening -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Opened:
    referral: Referral
    replayed: bool  # the caller's client_referral_id again: the referral it opened before


@handlers.handles(commands.OpenReferralCommand)
async def open_referral(cmd: commands.OpenReferralCommand, uow: IntakeUnitOfWork) -> Opened:
    actor, body = cmd.actor, cmd.body
    organisation = _organisation_of(actor)
    referral = Referral(episode_id=uuid.uuid4(), person_id=body.person_id, referral_source=body.referral_source,
                        target_condition=body.target_condition, created_at=uow.now(), organisation_id=organisation,
                        # the opener is the intake clinician when they are one (admins, partner forms: none yet)
                        intake_clinician_id=actor.sub if "intake_clinician" in actor.roles else None)
    if not await uow.referrals.add(referral, created_by=actor.sub, client_referral_id=body.client_referral_id):
        earlier = await uow.referrals.by_client_id(actor.sub, body.client_referral_id)
        assert earlier is not None  # the insert met it
        if earlier.organisation_id is not None and earlier.organisation_id != organisation:
            # The same caller id under another organisation: never name (or return) that referral.
            raise Conflict("client_referral_id was already used for a different referral", field="client_referral_id")
        if (earlier.person_id, earlier.referral_source, earlier.target_condition) != (
                body.person_id, body.referral_source, body.target_condition):
            raise Conflict("client_referral_id was already used for a different referral", field="client_referral_id",
                           episode_id=str(earlier.episode_id))
        await audit(uow, actor, "referral.open_repeated", earlier)
        return Opened(earlier, replayed=True)
    await audit(uow, actor, "referral.opened", referral, referral_source=body.referral_source,
                target_condition=body.target_condition.value)
    return Opened(referral, replayed=False)


# ---- the steps, applied to a loaded referral (shared by the step commands and completion) ---

Step = Callable[[IntakeUnitOfWork, Referral, Any, Actor], Awaitable[None]]


async def _consent(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordConsent, actor: Actor) -> None:
    r.record_consent(body, actor.sub, uow.now())
    await audit(uow, actor, "consent.recorded", r, given=body.given, method=body.method.value,
                share_outcomes_with_referrer=body.share_outcomes_with_referrer)


async def _contact(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordContact, actor: Actor) -> None:
    # Contact details may change at any time, also after the intake ended.
    record = contact_record(body, r.person_id, uow.now())
    await uow.contacts.upsert(record, actor.sub)
    await uow.contacts.queue_publication(r.person_id)
    await audit(uow, actor, "contact.recorded", r,
                fields=sorted(k for k, v in body.model_dump(exclude_defaults=True).items() if v is not None))


async def _baseline(uow: IntakeUnitOfWork, r: Referral, body: commands.SubmitBaseline, actor: Actor) -> None:
    scored = r.record_baseline(body, uow.now())
    await uow.referrals.save_baseline(r.episode_id, scored, actor.sub, uow.now())
    await audit(uow, actor, "baseline.recorded", r, instrument=scored.instrument, flags=scored.flags)


async def _inventory(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordInventory, actor: Actor) -> None:
    r.record_inventory(body, actor.sub, uow.now())
    await audit(uow, actor, "inventory.recorded", r, people=len(body.people))


async def _focus(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordFocus, actor: Actor) -> None:
    r.record_focus(body, actor.sub, uow.now(), allow_secondary=uow.settings.allow_secondary_focus)
    await audit(uow, actor, "focus.recorded", r, primary=body.primary.value,
                secondary=body.secondary.value if body.secondary else None)


async def _template(uow: IntakeUnitOfWork, r: Referral, body: commands.ChooseTemplate, actor: Actor) -> None:
    had_eligibility = r.eligibility is not None
    r.choose_template(body.template_id, uow.settings.rules())
    await audit(uow, actor, "template.chosen", r, template_id=body.template_id,
                eligibility_reset=had_eligibility and r.eligibility is None)


async def _clinician(uow: IntakeUnitOfWork, r: Referral, body: commands.AssignClinician, actor: Actor) -> None:
    r.assign_clinician(body.clinician_id)
    await audit(uow, actor, "clinician.assigned", r, clinician_id=body.clinician_id)


async def _availability(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordAvailability, actor: Actor) -> None:
    r.record_availability(body, uow.settings.session_minutes)
    await audit(uow, actor, "availability.recorded", r, slots=len(body.slots))


async def _eligibility(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordEligibility, actor: Actor) -> None:
    r.record_eligibility(body, uow.settings.rules(), actor.sub, uow.now())
    await audit(uow, actor, "eligibility.recorded", r, template_id=r.template_id, eligible=r.eligibility.eligible,
                reasons=list(r.eligibility.reasons), exclusions=list(body.exclusions))


async def _risk_review(uow: IntakeUnitOfWork, r: Referral, body: commands.RecordRiskReview, actor: Actor) -> None:
    r.record_risk_review(body, uow.settings.rules(), actor.sub, uow.now())
    await uow.referrals.add_risk_review(r.episode_id, r.risk_reviews[-1])
    await audit(uow, actor, "risk_review.recorded", r, decision=body.decision.value)


async def _step(uow: IntakeUnitOfWork, cmd: commands.ReferralCommand, step: Step) -> Referral:
    r = await _load(uow, cmd.episode_id)
    was = r.status
    await step(uow, r, cmd.body, cmd.actor)
    return await _finish(uow, r, was, cmd.actor)


@handlers.handles(commands.RecordConsentCommand)
async def record_consent(cmd: commands.RecordConsentCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _consent)


@handlers.handles(commands.RecordContactCommand)
async def record_contact(cmd: commands.RecordContactCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _contact)


@handlers.handles(commands.SubmitBaselineCommand)
async def submit_baseline(cmd: commands.SubmitBaselineCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _baseline)


@handlers.handles(commands.RecordInventoryCommand)
async def record_inventory(cmd: commands.RecordInventoryCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _inventory)


@handlers.handles(commands.RecordFocusCommand)
async def record_focus(cmd: commands.RecordFocusCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _focus)


@handlers.handles(commands.ChooseTemplateCommand)
async def choose_template(cmd: commands.ChooseTemplateCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _template)


@handlers.handles(commands.AssignClinicianCommand)
async def assign_clinician(cmd: commands.AssignClinicianCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _clinician)


@handlers.handles(commands.RecordAvailabilityCommand)
async def record_availability(cmd: commands.RecordAvailabilityCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _availability)


@handlers.handles(commands.RecordEligibilityCommand)
async def record_eligibility(cmd: commands.RecordEligibilityCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _eligibility)


@handlers.handles(commands.RecordRiskReviewCommand)
async def record_risk_review(cmd: commands.RecordRiskReviewCommand, uow: IntakeUnitOfWork) -> Referral:
    return await _step(uow, cmd, _risk_review)


# ---- ending ------------------------------------------------------------------------------

@handlers.handles(commands.CompleteIntakeCommand)
async def complete_intake(cmd: commands.CompleteIntakeCommand, uow: IntakeUnitOfWork) -> Referral:
    """Record the parts given in the body (in the order below, as their own commands would), then
    complete. Completing again returns the first result: same event id, no second event.
    A part that declines the referral (eligibility, a crisis-referral risk review) stops here:
    the decline is kept and the caller learns the referral is declined."""
    actor, body = cmd.actor, cmd.body
    r = await _load(uow, cmd.episode_id)
    if r.status == Status.completed:
        await audit(uow, actor, "referral.complete_repeated", r, event_id=str(r.completed_event_id))
        return r
    was = r.status
    r.ensure_open()
    parts: list[tuple[str | None, Step, Any]] = [
        ("consent", _consent, body.consent),
        ("contact", _contact, body.contact),
        *((f"baseline.{i}", _baseline, b) for i, b in enumerate(body.baseline)),
        ("inventory", _inventory, body.inventory),
        ("focus", _focus, body.focus),
        (None, _template, commands.ChooseTemplate(template_id=body.template_id) if body.template_id else None),
        (None, _clinician, commands.AssignClinician(clinician_id=body.clinician_id) if body.clinician_id else None),
        ("availability", _availability, body.availability),
        ("risk_review", _risk_review, body.risk_review),  # safety before eligibility
        ("eligibility", _eligibility, body.eligibility),
    ]
    for prefix, step, part in parts:
        if part is None:
            continue
        if prefix is None:  # a top-level field of the body: the domain already names it
            await step(uow, r, part, actor)
        else:
            with field_prefix(prefix):
                await step(uow, r, part, actor)
        if r.status != Status.open:
            return await _finish(uow, r, was, actor)
    r.complete(uow.now(), uow.settings.rules())
    return await _finish(uow, r, was, actor)


@handlers.handles(commands.DeclineCommand)
async def decline_intake(cmd: commands.DeclineCommand, uow: IntakeUnitOfWork) -> Referral:
    r = await _load(uow, cmd.episode_id)
    was = r.status
    if not r.decline(cmd.body.reason_code, uow.settings.rules(), uow.now()):
        await audit(uow, cmd.actor, "referral.decline_repeated", r, event_id=str(r.declined_event_id))
        return r
    return await _finish(uow, r, was, cmd.actor)


# ---- personal data -----------------------------------------------------------------------

@handlers.handles(commands.ErasePersonCommand)
async def erase_person(cmd: commands.ErasePersonCommand, uow: IntakeUnitOfWork) -> dict:
    """Erase a person's contact details and every free text about them in the caller's
    organisation's referrals; publish the tombstone. A person with no referral in the caller's
    organisation answers like an unknown person (404, the same body)."""
    actor, person_id = cmd.actor, cmd.person_id
    unowned = uow.settings.owner_of_unowned()
    if not actor.org or not await uow.referrals.person_in_organisation(person_id, actor.org, unowned):
        raise NotFound(f"no referral or contact for person {person_id}", field="person_id")
    now = uow.now()
    referrals = await uow.referrals.for_person(person_id, for_update=True, organisation_id=actor.org,
                                               default_organisation=unowned)
    for r in referrals:
        r.erase_personal_text(now)
        await uow.referrals.save(r, now)
        await audit(uow, actor, "referral.personal_text_erased", r)
    await uow.referrals.erase_review_notes([r.episode_id for r in referrals])
    had_contact = await uow.contacts.delete(person_id)
    # Crypto-shredding: the person's data key is destroyed here, in the erasure's transaction; the
    # relay publishes its tombstone (rapport.private.person-keys) with the contact's.
    keys_destroyed = await uow.contacts.destroy_keys(person_id, now)
    await uow.contacts.queue_publication(person_id)  # no contact now → tombstones
    # → a notice on rapport.erasures (outcomes erases its free text)
    await uow.contacts.record_erasure(person_id, actor.sub, now, len(referrals), had_contact, actor.org)
    await uow.audit.record(at=now, actor=actor, action="person.erased", person_id=person_id,
                           referrals=len(referrals), contact=had_contact, keys_destroyed=keys_destroyed)
    return {"person_id": person_id, "erased_at": now.isoformat(), "referrals": len(referrals),
            "contact_erased": had_contact, "tombstone": "queued"}


@handlers.handles(commands.RepublishContactsCommand)
async def republish_contacts(cmd: commands.RepublishContactsCommand, uow: IntakeUnitOfWork) -> int:
    n = await uow.contacts.queue_all()
    await uow.audit.record(at=uow.now(), actor=cmd.actor, action="contacts.republished", contacts=n)
    return n
