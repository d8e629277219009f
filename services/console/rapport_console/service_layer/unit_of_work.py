"""The console's unit of work: one transaction, the caseload repository on its connection, and
the owning services' APIs (where a clinician's actions go).

Every path that opens one (the Kafka consumer, the HTTP bus) builds this class through the
runtime's ``make_uow`` (bootstrap.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rapport_shared.uow import UnitOfWork

from ..adapters.owners import OwnerServices
from ..adapters.repository import CaseloadRepository


def owners_for(settings: object) -> OwnerServices:
    return OwnerServices(outcomes_url=getattr(settings, "outcomes_url", "http://127.0.0.1:8083"),
                         notifier_url=getattr(settings, "notifier_url", "http://127.0.0.1:8084"),
                         timeout_s=getattr(settings, "owner_timeout_s", 10.0))


@dataclass
class ConsoleUnitOfWork(UnitOfWork):
    def __post_init__(self) -> None:
        # The schema names the change channel (a replay's shadow announces on its own).
        self.caseload = CaseloadRepository(self.conn, getattr(self.settings, "db_schema", None) or "console")
        self.owners = owners_for(self.settings)
