"""Quiet hours and working hours: the one type of each, pure (no I/O).

- :class:`QuietHours`: no non-urgent message between ``start`` and ``end``, wall-clock times in an
  IANA time zone; may wrap midnight. JSON: ``{"start": "21:00", "end": "08:00", "timezone":
  "Europe/London"}`` (the shape of ``private_contacts.QuietHours`` and the notifier's preferences).
- :class:`WorkingHours`: weekly slots in an IANA time zone. JSON (the notifier's clinicians):
  ``{"timezone": "Europe/London", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]}``;
  the scheduler's ``{"weekday": 1..7, "start", "end"}`` slots convert with
  :meth:`WorkingHours.from_weekday_slots` / :meth:`WorkingHours.to_weekday_slots`.

Input that does not parse raises :class:`QuietHoursError` / :class:`WorkingHoursError`: an
``Invalid`` (the HTTP edge answers 422 naming ``field``) that is also a ``ValueError`` (so a
pydantic validator may raise it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import Invalid

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_HHMM_END = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")
_DAY_MINUTES = 24 * 60


class HoursError(Invalid, ValueError):
    """``field``: the offending input's dotted path (``quiet_hours.start``); ``reason``: why. Its
    error code is ``Invalid`` (the body of any other invalid input)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason, field=field, code="Invalid")
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class QuietHoursError(HoursError):
    pass


class WorkingHoursError(HoursError):
    pass


def zone(name: object, field: str, error: type[HoursError] = HoursError) -> ZoneInfo:
    """An IANA time zone by name, or ``error`` naming ``field``."""
    try:
        if not isinstance(name, str) or not name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise error(field, "must be an IANA time zone, e.g. Europe/London") from None


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# ---------------------------------------------------------------- quiet hours
@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> "QuietHours | None":
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise QuietHoursError("quiet_hours", "must be an object {start, end, timezone}")
        parts = {}
        for f in ("start", "end"):
            m = _HHMM.match(str(raw.get(f, "")))
            if not m:
                raise QuietHoursError(f"quiet_hours.{f}", "must be HH:MM (24 h)")
            parts[f] = time(int(m.group(1)), int(m.group(2)))
        try:
            tz = ZoneInfo(str(raw.get("timezone", "")))
        except (ZoneInfoNotFoundError, ValueError):
            raise QuietHoursError("quiet_hours.timezone", "must be an IANA time zone, e.g. Europe/London") from None
        if parts["start"] == parts["end"]:
            raise QuietHoursError("quiet_hours", "start and end must differ")
        return cls(parts["start"], parts["end"], tz)

    def to_json(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "timezone": str(self.tz)}

    def is_quiet(self, at: datetime) -> bool:
        return self._quiet(at.astimezone(self.tz).time())

    def _quiet(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight

    def next_allowed(self, at: datetime) -> datetime:
        """``at`` if it is outside the quiet hours, else the end of the quiet period."""
        local = at.astimezone(self.tz)
        if not self._quiet(local.time()):
            return at
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(at.tzinfo)


# ---------------------------------------------------------------- working hours
def _minutes(raw: object, field: str, *, end: bool) -> int:
    m = (_HHMM_END if end else _HHMM).match(raw) if isinstance(raw, str) else None
    if not m:
        raise WorkingHoursError(field, "must be HH:MM (24 h)" + (", or 24:00" if end else ""))
    h, mm = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
    return int(h) * 60 + int(mm)


@dataclass(frozen=True)
class WorkingHours:
    """Weekly working hours in a time zone. A slot lies within one day (``end`` after ``start``,
    ``24:00`` allowed); a night shift is two slots. Times are wall-clock times in the zone."""

    tz: ZoneInfo
    slots: tuple[tuple[int, int, int], ...]  # (weekday 0 = Monday, start minute, end minute)

    @property
    def timezone(self) -> str:
        return str(self.tz)

    @classmethod
    def parse(cls, raw: object) -> "WorkingHours | None":
        """The notifier's JSON shape (module docstring); ``None`` stays ``None``."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise WorkingHoursError("working_hours", "must be an object {timezone, slots}")
        extra = sorted(set(raw) - {"timezone", "slots"})
        if extra:
            raise WorkingHoursError(f"working_hours.{extra[0]}", "unknown field")
        tz = zone(raw.get("timezone"), "working_hours.timezone", WorkingHoursError)
        slots_raw = raw.get("slots")
        if not isinstance(slots_raw, list) or not slots_raw:
            raise WorkingHoursError("working_hours.slots", "must be a non-empty list of {day, start, end}")
        slots = []
        for i, slot in enumerate(slots_raw):
            at = f"working_hours.slots.{i}"
            if not isinstance(slot, Mapping):
                raise WorkingHoursError(at, "must be an object {day, start, end}")
            extra = sorted(set(slot) - {"day", "start", "end"})
            if extra:
                raise WorkingHoursError(f"{at}.{extra[0]}", "unknown field")
            if slot.get("day") not in DAYS:
                raise WorkingHoursError(f"{at}.day", f"must be one of {', '.join(DAYS)}")
            start = _minutes(slot.get("start"), f"{at}.start", end=False)
            end = _minutes(slot.get("end"), f"{at}.end", end=True)
            if end <= start:
                raise WorkingHoursError(f"{at}.end", "must be after start (a slot lies within one day)")
            slots.append((DAYS.index(slot["day"]), start, end))
        return cls(tz, tuple(slots))

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone,
                "slots": [{"day": DAYS[d], "start": _hhmm(s), "end": _hhmm(e)} for d, s, e in self.slots]}

    @classmethod
    def from_weekday_slots(cls, timezone: str, slots: Iterable[Any], *, field: str = "slots") -> "WorkingHours":
        """From ``{"weekday": 1..7 (ISO, Monday = 1), "start": "HH:MM", "end": "HH:MM"}`` dicts or
        objects with those attributes (the scheduler's shape), ordered by day and start. The order
        of start and end is the caller's to check (a slot that ends before it starts holds nothing)."""
        tz = zone(timezone, "timezone", WorkingHoursError)
        out = []
        for i, s in enumerate(slots):
            get = s.get if isinstance(s, Mapping) else (lambda k, s=s: getattr(s, k))
            start = _minutes(str(get("start"))[:5], f"{field}.{i}.start", end=False)
            end = _minutes(str(get("end"))[:5], f"{field}.{i}.end", end=True)
            out.append((int(get("weekday")) - 1, start, end))
        return cls(tz, tuple(sorted(out, key=lambda slot: slot[:2])))

    def to_weekday_slots(self) -> list[dict[str, Any]]:
        return [{"weekday": d + 1, "start": _hhmm(s), "end": _hhmm(e)} for d, s, e in self.slots]

    def within(self, at: datetime) -> bool:
        """Whether the instant ``at`` falls in a slot."""
        local = at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        return any(day == local.weekday() and start <= minute < end for day, start, end in self.slots)

    def contains(self, start: datetime, end: datetime) -> bool:
        """Whether ``[start, end)`` lies inside one slot (same local day)."""
        s, e = start.astimezone(self.tz), end.astimezone(self.tz)
        if s.date() != e.date():
            return False
        s_sec = s.hour * 3600 + s.minute * 60 + s.second + s.microsecond / 1e6
        e_sec = e.hour * 3600 + e.minute * 60 + e.second + e.microsecond / 1e6
        return any(day == s.weekday() and lo * 60 <= s_sec and e_sec <= hi * 60 for day, lo, hi in self.slots)


__all__ = ["DAYS", "HoursError", "QuietHours", "QuietHoursError", "WorkingHours", "WorkingHoursError", "zone"]
