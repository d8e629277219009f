"""Outcomes' unit of work: one transaction, the repositories on its connection, the policy.

Every path that opens one (the Kafka consumer, the HTTP bus, the reads) builds this class
through the runtime's ``make_uow`` (bootstrap.py), so handlers reach the same repositories and
settings whichever way a message came in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport_shared.uow import UnitOfWork

from ..adapters.repository import (
    AlertRepository,
    CommunicationRepository,
    CourseRepository,
    EpisodeRepository,
    EvaluationRepository,
    SessionEventRepository,
    SessionRepository,
    SubmissionRepository,
)
from ..domain.policy import OutcomesPolicy


@dataclass
class OutcomesUnitOfWork(UnitOfWork):
    def __post_init__(self) -> None:
        self.episodes = EpisodeRepository(self.conn)
        self.submissions = SubmissionRepository(self.conn)
        self.alerts = AlertRepository(self.conn)
        self.courses = CourseRepository(self.conn)
        self.evaluations = EvaluationRepository(self.conn)
        self.sessions = SessionRepository(self.conn)
        self.session_events = SessionEventRepository(self.conn)
        self.communications = CommunicationRepository(self.conn)

    @property
    def policy(self) -> OutcomesPolicy:
        """The configured rules (``OutcomesSettings.policy()``, built once)."""
        return policy_of(self.settings)

    @property
    def default_organisation(self) -> str | None:
        """The organisation of an episode whose intake event names none (an older producer)."""
        return getattr(self.settings, "default_organisation", "") or None


_DEFAULT_POLICY: OutcomesPolicy | None = None


def policy_of(settings: object) -> OutcomesPolicy:
    """The settings' policy; domain.md's defaults for settings that configure none."""
    global _DEFAULT_POLICY
    make = getattr(settings, "policy", None)
    if callable(make):
        return make()
    if _DEFAULT_POLICY is None:
        _DEFAULT_POLICY = OutcomesPolicy()
    return _DEFAULT_POLICY
