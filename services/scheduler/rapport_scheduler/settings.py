"""Scheduler settings (env vars ``RAPPORT_*``). Clinical rules live in ``domain/templates.json``;
these are the clinic's operational choices."""

from __future__ import annotations


from pydantic import Field

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


def load() -> SchedulerSettings:
    return SchedulerSettings()
