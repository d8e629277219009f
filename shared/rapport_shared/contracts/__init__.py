"""The partner contract: one pydantic model per CloudEvents type, and the registry of them.

Each model is exported as a JSON Schema file under ``contracts/schemas/`` (committed);
``python -m rapport_shared.contracts.export`` regenerates them and a unit test fails when a
model and its committed schema disagree.
"""

from __future__ import annotations

from .base import EventData, Phase, ProblemArea, PseudonymousId, TargetCondition
from .course import CoursePlannedV1, PhaseChangedV1, PhaseChangeReason, PhaseSpan, PlannedSession
from .intake import Availability, BaselineScore, Focus, IntakeCompletedV1, IntakeDeclinedV1, WeeklySlot
from .notifications import NotificationDeliveredV1, NotificationFailedV1
from .outcomes import ReliableChange, ScoreSubmittedV1, Timepoint

EVENT_MODELS: dict[str, type[EventData]] = {
    m.event_type: m
    for m in (
        IntakeCompletedV1,
        IntakeDeclinedV1,
        CoursePlannedV1,
        PhaseChangedV1,
        ScoreSubmittedV1,
        NotificationDeliveredV1,
        NotificationFailedV1,
    )
}


def model_for(event_type: str) -> type[EventData] | None:
    return EVENT_MODELS.get(event_type)


__all__ = [
    "EVENT_MODELS",
    "Availability",
    "BaselineScore",
    "CoursePlannedV1",
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
    "ReliableChange",
    "ScoreSubmittedV1",
    "TargetCondition",
    "Timepoint",
    "WeeklySlot",
    "model_for",
]
