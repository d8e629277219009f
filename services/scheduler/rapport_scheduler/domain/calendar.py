"""Booking rules (pure): where a session may go.

A session may start at ``t`` when, for its whole length, it lies inside one of the patient's
weekly availability windows (their time zone) and one of the clinician's working-hours windows
(the clinician's time zone) — both the one working-hours type, ``rapport_shared.hours`` — not
on a clinic closure day (the clinic's time zone), and not over another session of the same
clinician. Candidate starts are the window starts and then every ``step_minutes``. Weekly series
keep the same local time each week (across DST changes) where they can and take the next valid
start where they cannot.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Iterable
from zoneinfo import ZoneInfo

from rapport_shared.hours import WorkingHours


class NoBookableSlot(ValueError):
    pass


class Refusal(StrEnum):
    """Why a start is not bookable (named in the 4xx answer)."""

    outside_patient_availability = "outside_patient_availability"
    outside_working_hours = "outside_working_hours"
    closure_day = "closure_day"
    clinician_busy = "clinician_busy"


class WeeklyHours:
    """Transitional spelling for test helpers written before the one working-hours type
    (``rapport_testing/scheduler.py``): ``WeeklyHours.from_slots`` builds a :class:`WorkingHours`."""

    @staticmethod
    def from_slots(timezone: str, slots: Iterable) -> WorkingHours:
        return WorkingHours.from_weekday_slots(timezone, slots)


def _local(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """Wall-clock ``minute`` of ``day`` in ``tz`` (1440, a slot ending at 24:00: the next midnight)."""
    if minute >= 24 * 60:
        return datetime.combine(day + timedelta(days=1), time(0), tz)
    return datetime.combine(day, time(minute // 60, minute % 60), tz)


@dataclass(frozen=True)
class BookingRules:
    patient: WorkingHours
    clinician: WorkingHours
    clinic_timezone: str = "Europe/London"
    closures: frozenset[date] = frozenset()
    busy: tuple[tuple[datetime, datetime], ...] = ()  # the clinician's sessions in other courses
    step_minutes: int = 15
    horizon_days: int = 1095

    def __post_init__(self) -> None:
        # Busy intervals sorted by start with the running maximum of their ends: "does anything
        # overlap [s, e)?" is then one bisection, even with years of a full calendar to search.
        ordered = sorted(self.busy)
        ends, top = [], None
        for _, b_end in ordered:
            top = b_end if top is None or b_end > top else top
            ends.append(top)
        object.__setattr__(self, "_starts", [b for b, _ in ordered])
        object.__setattr__(self, "_max_ends", ends)

    def _busy_between(self, start: datetime, end: datetime) -> bool:
        i = bisect_left(self._starts, end)  # intervals starting before ``end``
        return i > 0 and self._max_ends[i - 1] > start

    def refusal(self, start: datetime, minutes: int) -> Refusal | None:
        """None if a ``minutes`` session may start at ``start``, else the first rule it breaks."""
        end = start + timedelta(minutes=minutes)
        if not self.patient.contains(start, end):
            return Refusal.outside_patient_availability
        if not self.clinician.contains(start, end):
            return Refusal.outside_working_hours
        tz = ZoneInfo(self.clinic_timezone)
        if start.astimezone(tz).date() in self.closures or end.astimezone(tz).date() in self.closures:
            return Refusal.closure_day
        if self._busy_between(start, end):
            return Refusal.clinician_busy
        return None

    def next_start(self, after: datetime, minutes: int) -> datetime:
        """The earliest bookable start at or after ``after``."""
        tz = self.patient.tz
        local = after.astimezone(tz)
        step = timedelta(minutes=self.step_minutes)
        length = timedelta(minutes=minutes)
        for offset in range(self.horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            for weekday, first, last in self.patient.slots:
                if weekday != day.weekday():
                    continue
                t = _local(day, first, tz)
                close = _local(day, last, tz)
                while t + length <= close:
                    if t >= after and self.refusal(t, minutes) is None:
                        return t
                    t += step
        raise NoBookableSlot(f"no bookable {minutes}-minute start within {self.horizon_days} days after {after.isoformat()}")

    def same_time_later(self, t: datetime, days: int) -> datetime:
        """``t`` moved ``days`` later at the same wall-clock time in the patient's time zone."""
        local = t.astimezone(self.patient.tz)
        return datetime.combine(local.date() + timedelta(days=days), local.timetz().replace(tzinfo=None), self.patient.tz)

    def series(self, after: datetime, count: int, minutes: int, cadence_days: int) -> list[datetime]:
        """``count`` starts, one every ``cadence_days`` at the first one's local time where possible."""
        starts: list[datetime] = []
        for j in range(count):
            if not starts:
                starts.append(self.next_start(after, minutes))
                continue
            preferred = self.same_time_later(starts[0], cadence_days * j)
            floor = starts[-1] + timedelta(minutes=minutes)
            starts.append(self.next_start(max(preferred, floor), minutes))
        return starts
