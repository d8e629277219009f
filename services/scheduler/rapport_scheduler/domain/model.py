"""Scheduler's domain: templates, the phase plan and weekly booking (pure, no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from rapport_shared.contracts import Availability, Phase, PhaseSpan


@dataclass(frozen=True)
class Template:
    id: str
    sessions: int
    initial: int
    termination: int
    cadence_days: int
    min_sessions: int
    max_sessions: int


@cache
def templates() -> dict[str, Template]:
    raw = json.loads((Path(__file__).parent / "templates.json").read_text())
    return {
        k: Template(k, v["sessions"], v["initial"], v["termination"], v["cadence_days"], v["min_sessions"], v["max_sessions"])
        for k, v in raw.items()
    }


class UnknownTemplate(LookupError):
    pass


def template(template_id: str) -> Template:
    try:
        return templates()[template_id]
    except KeyError:
        raise UnknownTemplate(template_id) from None


def phase_plan(t: Template, contracted: int) -> list[PhaseSpan]:
    """Planned boundaries: initial 1..i, middle i+1..n-t, termination n-t+1..n (domain.md 2)."""
    return [
        PhaseSpan(phase=Phase.initial, first_session=1, last_session=t.initial),
        PhaseSpan(phase=Phase.middle, first_session=t.initial + 1, last_session=contracted - t.termination),
        PhaseSpan(phase=Phase.termination, first_session=contracted - t.termination + 1, last_session=contracted),
    ]


class NoBookableSlot(ValueError):
    pass


def weekly_starts(availability: Availability, after: datetime, count: int, minutes: int, cadence_days: int = 7) -> list[datetime]:
    """The first availability slot (in the patient's time zone) that holds a session, from
    ``after`` on, then every ``cadence_days`` at the same local time."""
    tz = ZoneInfo(availability.timezone)
    local_after = after.astimezone(tz)
    best: datetime | None = None
    for slot in availability.slots:
        start = time.fromisoformat(slot.start)
        end = time.fromisoformat(slot.end)
        if datetime.combine(date.min, end) - datetime.combine(date.min, start) < timedelta(minutes=minutes):
            continue
        days_ahead = (slot.weekday - local_after.isoweekday()) % 7
        candidate = datetime.combine(local_after.date() + timedelta(days=days_ahead), start, tz)
        if candidate <= local_after:
            candidate += timedelta(days=7)
        if best is None or candidate < best:
            best = candidate
    if best is None:
        raise NoBookableSlot(f"no availability slot holds a {minutes}-minute session")
    # Same wall-clock time each week, across DST changes.
    return [datetime.combine(best.date() + timedelta(days=cadence_days * i), best.timetz()) for i in range(count)]
