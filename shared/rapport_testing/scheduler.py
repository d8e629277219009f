"""Test and demo helpers for the scheduler (not used at run time)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from rapport_shared.contracts import IntakeCompletedV1

from rapport_scheduler.domain.calendar import BookingRules, WeeklyHours

# Every day 08:00–20:00: wide enough that booking never fails in a property test.
ALL_WEEK = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(1, 8)]


def intake_completed(*, template_id: str = "ipt-standard", clinician_id: str = "clin-test",
                     completed_at: datetime | None = None, slots: list[dict] | None = None,
                     episode_id: uuid.UUID | None = None, person_id: str = "P-test-1",
                     organisation_id: str | None = "org-test") -> IntakeCompletedV1:
    """An intake completion as the intake service publishes it; ``organisation_id=None`` as an
    older producer would (the field is optional in v1). "org-test" is the tests' TEST_ORG."""
    completed = completed_at or datetime(2030, 1, 7, 10, 0, tzinfo=timezone.utc)  # a Monday
    return IntakeCompletedV1(
        episode_id=episode_id or uuid.uuid4(), person_id=person_id, target_condition="depression",
        template_id=template_id, focus={"primary": "role_transition"}, clinician_id=clinician_id,
        availability={"timezone": "Europe/London", "slots": slots or [
            {"weekday": 2, "start": "09:00", "end": "12:00"}, {"weekday": 4, "start": "14:00", "end": "17:00"}]},
        referred_at=completed - timedelta(days=7), completed_at=completed, organisation_id=organisation_id,
    )


def rules_for(intake: IntakeCompletedV1, *, clinician: WeeklyHours | None = None, closures=(), busy=()) -> BookingRules:
    return BookingRules(
        patient=WeeklyHours.from_slots(intake.availability.timezone, intake.availability.slots),
        clinician=clinician or WeeklyHours.from_slots("Europe/London", ALL_WEEK),
        closures=frozenset(closures), busy=tuple(busy),
    )
