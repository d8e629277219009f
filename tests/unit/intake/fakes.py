"""Intake's unit of work without Postgres: in-memory repositories with the methods of the real
ones (``adapters/repository.py``, ``adapters/contacts.py``, ``adapters/audit.py``), so the
service layer's handlers and views run as in the service and tests look at what they stored.

Like the tables, a referral's row, its baseline scores and its risk reviews are stored apart
(each by its own write) and a read returns a fresh copy: a handler that changes a referral
without saving it leaves nothing behind here either.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from rapport_shared.contracts import BaselineScore
from rapport_shared.private_contacts import ContactRecordV1
from rapport_testing.fake_uow import FakeUnitOfWork
from rapport_intake.domain.commands import Actor
from rapport_intake.domain.model import Referral, RiskReview
from rapport_intake.settings import IntakeSettings


class FakeReferralRepository:
    def __init__(self) -> None:
        self.rows: dict[UUID, Referral] = {}  # without baseline and risk reviews (their own tables)
        self.created_by: dict[UUID, tuple[str, str | None]] = {}  # episode → (created_by, client_referral_id)
        self.baseline: dict[UUID, dict[str, BaselineScore]] = {}
        self.reviews: dict[UUID, list[RiskReview]] = {}
        self.locked: list[UUID] = []  # episodes read FOR UPDATE

    @staticmethod
    def _row(r: Referral) -> Referral:
        return dataclasses.replace(copy.deepcopy(r), baseline={}, risk_reviews=[])

    def _read(self, episode_id: UUID) -> Referral:
        r = copy.deepcopy(self.rows[episode_id])
        r.baseline = dict(sorted(copy.deepcopy(self.baseline.get(episode_id, {})).items()))
        r.risk_reviews = copy.deepcopy(self.reviews.get(episode_id, []))
        return r

    async def add(self, r: Referral, created_by: str, client_referral_id: str | None = None) -> bool:
        if client_referral_id is not None and (created_by, client_referral_id) in self.created_by.values():
            return False
        self.rows[r.episode_id] = self._row(r)
        self.created_by[r.episode_id] = (created_by, client_referral_id)
        return True

    async def page(self, *, status: str | None, clinician_id: str | None, after: tuple, limit: int,
                   organisation_id: str | None = None, assigned_to: str | None = None, person_id: str | None = None,
                   default_organisation: str | None = None) -> list[Referral]:
        def keep(r: Referral) -> bool:
            return ((status is None or r.status.value == status)
                    and (clinician_id is None or r.clinician_id == clinician_id)
                    and (after[0] is None or (r.created_at, str(r.episode_id)) > (after[0], str(after[1])))
                    and (organisation_id is None or (r.organisation_id or default_organisation) == organisation_id)
                    and (assigned_to is None or assigned_to in (r.intake_clinician_id, r.clinician_id))
                    and (person_id is None or r.person_id == person_id))

        found = sorted((r for r in self.rows.values() if keep(r)), key=lambda r: (r.created_at, str(r.episode_id)))
        return [self._read(r.episode_id) for r in found[:limit]]

    async def scope(self, episode_id: UUID) -> dict[str, Any] | None:
        r = self.rows.get(episode_id)
        return None if r is None else {"organisation_id": r.organisation_id, "person_id": r.person_id,
                                       "intake_clinician_id": r.intake_clinician_id, "clinician_id": r.clinician_id}

    async def person_in_organisation(self, person_id: str, organisation_id: str,
                                     default_organisation: str | None = None) -> bool:
        return any(r.person_id == person_id and (r.organisation_id or default_organisation) == organisation_id
                   for r in self.rows.values())

    async def by_client_id(self, created_by: str, client_referral_id: str) -> Referral | None:
        for episode_id, key in self.created_by.items():
            if key == (created_by, client_referral_id):
                return self._read(episode_id)
        return None

    async def get(self, episode_id: UUID, *, for_update: bool = False) -> Referral | None:
        if episode_id not in self.rows:
            return None
        if for_update:
            self.locked.append(episode_id)
        return self._read(episode_id)

    async def for_person(self, person_id: str, *, for_update: bool = False, organisation_id: str | None = None,
                         default_organisation: str | None = None) -> list[Referral]:
        found = [r for r in self.rows.values() if r.person_id == person_id
                 and (organisation_id is None or (r.organisation_id or default_organisation) == organisation_id)]
        found.sort(key=lambda r: (r.created_at, str(r.episode_id)))
        if for_update:
            self.locked += [r.episode_id for r in found]
        return [self._read(r.episode_id) for r in found]

    async def save(self, r: Referral, now: datetime) -> None:
        assert r.episode_id in self.rows, "UPDATE of a referral that was never added"
        self.rows[r.episode_id] = self._row(r)

    async def save_baseline(self, episode_id: UUID, s: BaselineScore, by: str, at: datetime) -> None:
        self.baseline.setdefault(episode_id, {})[s.instrument] = copy.deepcopy(s)

    async def add_risk_review(self, episode_id: UUID, r: RiskReview) -> None:
        self.reviews.setdefault(episode_id, []).append(r)

    async def erase_review_notes(self, episode_ids: list[UUID]) -> None:
        for episode_id in episode_ids:
            self.reviews[episode_id] = [r.model_copy(update={"note": None}) for r in self.reviews.get(episode_id, [])]


@dataclass
class Erasure:
    person_id: str
    by: str
    at: datetime
    referrals: int
    contact: bool
    organisation_id: str | None


class FakeContactRepository:
    def __init__(self) -> None:
        self.contacts: dict[str, ContactRecordV1] = {}
        self.updated_by: dict[str, str] = {}
        self.publications: list[str] = []  # the queue the contacts relay reads (person ids, in order)
        self.erasures: list[Erasure] = []
        self.live_keys: set[str] = set()  # persons with a live data key
        self.notified = 0  # NOTIFYs sent to wake the relay

    async def get(self, person_id: str) -> ContactRecordV1 | None:
        return self.contacts.get(person_id)

    async def get_many(self, person_ids: list[str]) -> dict[str, ContactRecordV1]:
        return {p: self.contacts[p] for p in person_ids if p in self.contacts}

    async def upsert(self, c: ContactRecordV1, by: str) -> None:
        self.contacts[c.person_id] = c
        self.updated_by[c.person_id] = by

    async def delete(self, person_id: str) -> bool:
        return self.contacts.pop(person_id, None) is not None

    async def queue_publication(self, person_id: str) -> None:
        self.publications.append(person_id)
        self.notified += 1

    async def queue_all(self) -> int:
        self.publications += list(self.contacts)
        self.notified += 1
        return len(self.contacts)

    async def record_erasure(self, person_id: str, by: str, at: datetime, referrals: int, contact: bool,
                             organisation_id: str | None = None) -> None:
        self.erasures.append(Erasure(person_id, by, at, referrals, contact, organisation_id))

    async def destroy_keys(self, person_id: str, at: datetime | None = None) -> int:
        if person_id in self.live_keys:
            self.live_keys.discard(person_id)
            return 1
        return 0


@dataclass
class AuditEntry:
    seq: int
    at: datetime
    actor: Actor
    action: str
    episode_id: UUID | None
    person_id: str | None
    detail: dict[str, Any]


class FakeAuditLog:
    def __init__(self, referrals: FakeReferralRepository) -> None:
        self.entries: list[AuditEntry] = []
        self._referrals = referrals  # the trail of an organisation includes entries on its referrals

    async def record(self, *, at: datetime, actor: Actor, action: str, episode_id: UUID | None = None,
                     person_id: str | None = None, **detail: Any) -> None:
        self.entries.append(AuditEntry(len(self.entries) + 1, at, actor, action, episode_id, person_id, detail))

    async def query(self, *, organisation_id: str | None, episode_id: UUID | None = None,
                    person_id: str | None = None, actor: str | None = None, action: str | None = None,
                    since: datetime | None = None, after_seq: int = 0, limit: int = 100,
                    default_organisation: str | None = None) -> list[dict[str, Any]]:
        if organisation_id is None:
            return []

        def of_organisation(e: AuditEntry) -> bool:
            if e.actor.org == organisation_id:
                return True
            r = self._referrals.rows.get(e.episode_id) if e.episode_id else None
            return r is not None and (r.organisation_id or default_organisation) == organisation_id

        found = [e for e in self.entries if e.seq > after_seq and of_organisation(e)
                 and (episode_id is None or e.episode_id == episode_id)
                 and (person_id is None or e.person_id == person_id)
                 and (actor is None or e.actor.sub == actor) and (action is None or e.action == action)
                 and (since is None or e.at >= since)]
        return [{"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor.sub, "actor_roles": list(e.actor.roles),
                 "action": e.action, "episode_id": str(e.episode_id) if e.episode_id else None,
                 "person_id": e.person_id, "detail": e.detail} for e in found[:limit]]

    def actions(self) -> list[str]:
        return [e.action for e in self.entries]


@dataclass
class FakeIntakeUnitOfWork(FakeUnitOfWork):
    """``IntakeUnitOfWork`` in memory; pass the same repositories to several units to see what
    one unit left for the next (as committed rows would be)."""

    settings: Any = field(default_factory=IntakeSettings)
    referrals: FakeReferralRepository = field(default_factory=FakeReferralRepository)
    contacts: FakeContactRepository = field(default_factory=FakeContactRepository)
    audit: FakeAuditLog | None = None

    def __post_init__(self) -> None:
        if self.audit is None:
            self.audit = FakeAuditLog(self.referrals)
