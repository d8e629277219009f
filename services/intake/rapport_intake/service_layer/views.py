"""Intake's reads: what the HTTP GET routes answer, through the repositories.

Every read of personal or clinical data is audited (who looked at what), so a view runs in a
unit of work too and writes its audit entry there; it changes nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from rapport_shared.errors import NotFound
from rapport_shared.private_contacts import ContactRecordV1

from ..domain.commands import Actor
from ..domain.model import Referral
from .handlers import audit
from .unit_of_work import IntakeUnitOfWork

if TYPE_CHECKING:
    from rapport_shared.http.access import ListFilter


async def referrals(uow: IntakeUnitOfWork, actor: Actor, *, status: str | None, clinician_id: str | None,
                    after: tuple, limit: int, reach: "ListFilter | None" = None) -> list[Referral]:
    """The worklist, narrowed to what the caller may see (``reach``: its organisation, the
    referrals it is assigned to). Audited like a read: one entry with the filters and the episodes shown."""
    nothing = reach is not None and reach.nothing
    found = [] if nothing else await uow.referrals.page(
        status=status, clinician_id=clinician_id, after=after, limit=limit,
        organisation_id=reach.organisation_id if reach else None, assigned_to=reach.assigned_to if reach else None,
        person_id=reach.person_id if reach else None, default_organisation=uow.settings.owner_of_unowned())
    await uow.audit.record(at=uow.now(), actor=actor, action="referral.listed", status=status,
                           clinician_id=clinician_id, episodes=[str(r.episode_id) for r in found])
    return found


async def _referral(uow: IntakeUnitOfWork, episode_id: UUID) -> Referral:
    found = await uow.referrals.get(episode_id)
    if found is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    return found


async def referral(uow: IntakeUnitOfWork, episode_id: UUID, actor: Actor) -> Referral:
    found = await _referral(uow, episode_id)
    await audit(uow, actor, "referral.read", found)
    return found


async def contact(uow: IntakeUnitOfWork, episode_id: UUID, actor: Actor) -> ContactRecordV1 | None:
    """The contact details of the referral's person (None when none are recorded)."""
    r = await _referral(uow, episode_id)
    found = await uow.contacts.get(r.person_id)
    await audit(uow, actor, "contact.read", r, found=found is not None)
    return found


async def audit_trail(uow: IntakeUnitOfWork, reader: Actor, **filters: Any) -> list[dict]:
    """The caller's organisation's trail only (entries on its referrals or by its callers)."""
    entries = await uow.audit.query(organisation_id=reader.org, default_organisation=uow.settings.owner_of_unowned(),
                                    **filters)
    # Reading the audit log is itself audited (who looked at whose trail).
    await uow.audit.record(at=uow.now(), actor=reader, action="audit.read",
                           episode_id=filters.get("episode_id"), person_id=filters.get("person_id"))
    return entries
