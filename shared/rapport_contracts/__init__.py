"""Rapport's partner contract (``rapport-contracts``): one pydantic model per CloudEvents type and
their catalogue (:data:`EVENT_MODELS`, :func:`model_for`, :func:`topic_of`), the JSON Schemas
(:mod:`.schemas`, generated from the models), the CloudEvents Kafka binding (:mod:`.envelope`,
:mod:`.binding`: a record to a typed event and back) and webhook verification (:mod:`.webhooks`,
through ``standardwebhooks``). Needs pydantic and standardwebhooks only; the services use it
through ``rapport_shared.contracts``.

Each model is published as a JSON Schema file, committed once where partners read it:
``docs/events/schemas/events/<type>.json``. ``python -m rapport_tools.docs`` (or ``python -m
rapport_tools.contracts.export``, the schemas only) regenerates them, and a unit test fails when a
model and its committed schema disagree.
"""

from __future__ import annotations

from .base import EpisodeEventData, EventData, Phase, ProblemArea, PseudonymousId, StrictPseudonymousId, TargetCondition
from .course import CoursePlannedV1, PhaseChangedV1, PhaseChangeReason, PhaseSpan, PlannedSession
from .intake import Availability, BaselineScore, Focus, IntakeCompletedV1, IntakeDeclinedV1, WeeklySlot
from .notifications import NotificationDeliveredV1, NotificationFailedV1
from .outcomes import ReliableChange, ScoreSubmittedV1, Timepoint

from . import course, intake, notifications, outcomes  # noqa: F401  (modules register their models)


def _all_models(base: type[EventData]) -> list[type[EventData]]:
    found = []
    for sub in base.__subclasses__():
        if "event_type" in sub.__dict__:
            found.append(sub)
        found.extend(_all_models(sub))
    return found


# Every EventData subclass with an event_type, from every module above: adding an event is
# adding a model to its topic's module (then ``python -m rapport_tools.docs``).
EVENT_MODELS: dict[str, type[EventData]] = {m.event_type: m for m in _all_models(EventData)}


def model_for(event_type: str) -> type[EventData] | None:
    return EVENT_MODELS.get(event_type)


def topic_of(event_type: str) -> str | None:
    """The shared topic a partner type is published on (``None`` for an unknown type)."""
    model = EVENT_MODELS.get(event_type)
    return getattr(model, "topic", None) if model else None


__all__ = [
    "EVENT_MODELS",
    "Availability",
    "BaselineScore",
    "CoursePlannedV1",
    "EpisodeEventData",
    "EventData",
    "Focus",
    "IntakeCompletedV1",
    "IntakeDeclinedV1",
    "NotificationDeliveredV1",
    "NotificationFailedV1",
    "Phase",
    "PhaseChangeReason",
    "PhaseChangedV1",
    "PhaseSpan",
    "PlannedSession",
    "ProblemArea",
    "PseudonymousId",
    "StrictPseudonymousId",
    "ReliableChange",
    "ScoreSubmittedV1",
    "TargetCondition",
    "Timepoint",
    "WeeklySlot",
    "model_for",
    "topic_of",
]
