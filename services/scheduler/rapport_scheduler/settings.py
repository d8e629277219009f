"""Scheduler settings (env vars ``RAPPORT_*``). Clinical rules live in ``domain/templates.json``;
these are the clinic's operational choices."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from rapport_shared.hours import WorkingHours
from rapport_shared.settings import ServiceSettings

# Clinicians without their own working hours (PUT /v1/clinicians/{id}/working-hours) get these.
DEFAULT_WORKING_HOURS = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(1, 6)]


class SchedulerSettings(ServiceSettings):
    service_name: str = "scheduler"
    http_port: int = 8082
    session_minutes: int = 50
    # Earliest first session after intake completes (clinics need a few days to book).
    first_session_lead_days: int = 2
    # domain.md 2: ended early after this many consecutive missed sessions ("configurable: default 3").
    disengagement_missed_sessions: int = Field(default=3, ge=1)
    # Booking: closure days are dates in the clinic's time zone; candidate starts every step.
    clinic_timezone: str = "Europe/London"
    default_working_hours: list[dict] = Field(default_factory=lambda: list(DEFAULT_WORKING_HOURS))
    default_working_hours_timezone: str = "Europe/London"
    booking_step_minutes: int = Field(default=15, ge=5)
    # Bounds the search for a free slot only: a full calendar pushes the first session later.
    booking_horizon_days: int = Field(default=1095, ge=7)
    timer_poll_interval_s: float = 1.0
    # The "initial-phase checklist not complete" review notice (domain.md 2) waits this grace after
    # session i ends, so a checklist recorded just after the session sends none: "end_of_day" (until
    # local midnight of that day in clinic_timezone) or an ISO 8601 duration after the session's end
    # ("PT2H"; "PT0S": at its end).
    initial_checklist_grace: Literal["end_of_day"] | timedelta = "end_of_day"

    # What the rules read from these settings (the service layer builds the decider's context from
    # them; each is a few small objects, so derived on use rather than cached).

    def default_hours(self) -> WorkingHours:
        """``default_working_hours`` as the booking rules read them."""
        return WorkingHours.from_weekday_slots(self.default_working_hours_timezone, self.default_working_hours)

    def notice_grace(self):
        from .domain.decider import NoticeGrace
        if self.initial_checklist_grace == "end_of_day":
            return NoticeGrace(end_of_day=True, timezone=self.clinic_timezone)
        if self.initial_checklist_grace < timedelta(0):
            raise ValueError("initial_checklist_grace must not be negative")
        return NoticeGrace(after=self.initial_checklist_grace)


def load() -> SchedulerSettings:
    return SchedulerSettings()
