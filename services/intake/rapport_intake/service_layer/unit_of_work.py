"""Intake's unit of work: one transaction, with the repositories its handlers use.

``uow.referrals`` (the referral aggregate), ``uow.contacts`` (contact details and their
publication queue), ``uow.audit`` (the audit log), plus what every unit has: ``emit`` (the
outbox), ``now()`` and ``settings`` (``IntakeSettings``: rules, session length, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport_shared.uow import UnitOfWork

from ..adapters.audit import AuditLog
from ..adapters.contacts import ContactRepository
from ..adapters.repository import ReferralRepository


@dataclass
class IntakeUnitOfWork(UnitOfWork):
    def __post_init__(self) -> None:
        self.referrals = ReferralRepository(self.conn)
        # The schema names the channel a queued publication NOTIFYs (it wakes the contacts relay).
        self.contacts = ContactRepository(self.conn, self.settings.db_schema)
        self.audit = AuditLog(self.conn)
