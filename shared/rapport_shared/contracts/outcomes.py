"""Events on ``rapport.outcomes``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import Field

from ..topics import OUTCOMES
from .base import Code, EventData


class Timepoint(StrEnum):
    baseline = "baseline"
    session = "session"
    end = "end"


class ReliableChange(StrEnum):
    improved = "improved"
    deteriorated = "deteriorated"
    no_reliable_change = "no_reliable_change"


class ScoreSubmittedV1(EventData):
    """A validated, scored questionnaire submission. Item answers stay in outcomes."""

    event_type = "rapport.score.submitted.v1"
    topic = OUTCOMES

    episode_id: UUID
    submission_id: UUID
    instrument: Code
    loinc_code: str | None = None
    timepoint: Timepoint
    session_number: int | None = Field(default=None, ge=1)
    total: float
    band: str | None = None
    caseness: bool | None = None
    subscales: dict[str, float] = Field(default_factory=dict)
    baseline_total: float | None = None
    change_from_baseline: float | None = None
    reliable_change: ReliableChange | None = Field(
        default=None, description="null when not determinable (no baseline, or no threshold configured)"
    )
    flags: list[str] = Field(default_factory=list, description="coded flags, e.g. safety_item_positive")
    administered_at: datetime
    scored_at: datetime
