"""Intake's domain: a referral and what completing it requires (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from rapport_shared.contracts import Availability, BaselineScore, Focus, TargetCondition
from rapport_shared.http.errors import Conflict, Invalid

# Instruments each target condition needs at baseline (domain.md 3: "the condition decides the
# outcome instruments collected"). WSAS (functioning) applies to all but is not required to start.
REQUIRED_BASELINE: dict[TargetCondition, tuple[str, ...]] = {
    TargetCondition.depression: ("phq9",),
    TargetCondition.anxiety: ("gad7",),
    TargetCondition.eating_disorder: ("edeq6",),
    TargetCondition.substance_use: ("audit",),
}


@dataclass
class Referral:
    episode_id: UUID
    person_id: str
    referral_source: str
    target_condition: TargetCondition
    created_at: datetime
    status: str = "open"
    template_id: str | None = None
    clinician_id: str | None = None
    focus: Focus | None = None
    availability: Availability | None = None
    baseline: dict[str, BaselineScore] = field(default_factory=dict)
    completed_at: datetime | None = None
    completed_event_id: UUID | None = None

    def missing_for_completion(self) -> list[str]:
        missing = [name for name in ("template_id", "clinician_id", "focus", "availability") if getattr(self, name) is None]
        missing += [f"baseline.{code}" for code in REQUIRED_BASELINE[self.target_condition] if code not in self.baseline]
        return missing

    def complete(self, now: datetime) -> None:
        if self.status == "declined":
            raise Conflict("a declined referral can never start a course", field="status", current_status=self.status)
        if self.status == "completed":
            return
        missing = self.missing_for_completion()
        if missing:
            raise Conflict("intake is not complete", field="intake", missing=missing)
        self.status = "completed"
        self.completed_at = now


def check_focus(focus: Focus) -> None:
    if focus.secondary is not None and focus.secondary == focus.primary:
        raise Invalid("secondary focus area must differ from the primary", field="focus.secondary")
