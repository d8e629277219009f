"""The notifier's unit of work: one transaction, the repositories on its connection, the
service's settings and clock, the outbox."""

from __future__ import annotations

from dataclasses import dataclass

from rapport_shared.programmes import Schedule, load_schedule
from rapport_shared.uow import UnitOfWork

from ..adapters.clinicians import ClinicianRepository, OncallRepository
from ..adapters.deliveries import DeliveryRepository
from ..adapters.patients import PatientRepository
from ..adapters.plans import Plans
from ..adapters.repository import AlertRepository, EpisodeRepository, SessionRepository
from ..adapters.subscriptions import SubscriptionRepository
from ..domain.rules import complete_languages
from ..settings import NotifierSettings


class SettingsView:
    """What handlers derive from the settings (shared with the fake unit of work)."""

    settings: NotifierSettings

    @property
    def default_org(self) -> str | None:
        """The organisation of an episode no event named one for (older producers; rows from
        before organisations): ``RAPPORT_DEFAULT_ORGANISATION``, or none."""
        return self.settings.default_organisation or None

    @property
    def schedule(self) -> Schedule:
        """The measurement schedule questionnaire requests follow (with the clinic's overrides)."""
        return load_schedule(self.settings.measurement_overrides or None)

    @property
    def languages(self) -> frozenset[str]:
        """Languages with a complete template set."""
        return complete_languages(self.settings.templates_dir)


@dataclass
class NotifierUnitOfWork(SettingsView, UnitOfWork):
    def __post_init__(self) -> None:
        schema = self.settings.db_schema
        self.episodes = EpisodeRepository(self.conn)
        self.sessions = SessionRepository(self.conn)
        self.alerts = AlertRepository(self.conn)
        self.clinicians = ClinicianRepository(self.conn)
        self.oncall = OncallRepository(self.conn)
        self.patients = PatientRepository(self.conn)
        self.subscriptions = SubscriptionRepository(self.conn)
        self.deliveries = DeliveryRepository(self.conn, schema)
        self.timers = Plans(self.conn, schema)
