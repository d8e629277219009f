"""Field types for what callers send over HTTP, exactly as strict as the JSON Schema they publish
(the OpenAPI documents are checked against the running services by schemathesis, docs/api.md).

- :data:`Timestamp`: an RFC 3339 date-time with an offset (``2026-01-31T09:00:00Z``,
  ``...+01:00``), as ``format: date-time`` says; never a number, a numeric string, a bare date
  or a time without offset (pydantic's lax mode takes all of those). An instant that leaves the
  years 1–9999 once read in UTC is refused too (nothing downstream can store it).
- :data:`Integer`: a JSON integer. ``3`` and ``3.0`` are the same integer in JSON Schema, so
  both are taken; ``"3"``, ``true`` and ``3.5`` are not (``StrictInt`` refuses ``3.0``, lax
  ``int`` takes ``"3"``).
- :data:`Day`: a calendar day ``YYYY-MM-DD`` (``format: date``); never ``0`` or a timestamp.
- :data:`TimeZoneName`: an IANA time zone name. Its schema lists the zones this machine knows
  (``x-rapport-values: timezones``, filled in when the OpenAPI document is built).
- :class:`WeeklySlotIn`: the contracts' weekly slot with ``weekday`` a JSON integer.

:func:`known` marks a string field whose allowed values are data the service loads (instrument
codes, template ids, decline reasons): the OpenAPI document lists them as an ``enum``
(``rapport_shared.http.openapi``); the domain still refuses an unknown value itself.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from .contracts.intake import WeeklySlot

# The marker the OpenAPI builder replaces with ``enum`` (rapport_shared.http.openapi).
VALUES_KEY = "x-rapport-values"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
TIMESTAMP_RULE = "must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:00:00Z"


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise ValueError(TIMESTAMP_RULE)


def _representable(value: datetime) -> datetime:
    try:
        value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range (years 1 to 9999 in UTC)") from None
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_representable)]


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("must be an integer")


Integer = Annotated[int, BeforeValidator(_integer)]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: Any) -> Any:
    if isinstance(value, date) or (isinstance(value, str) and _DAY.match(value)):
        return value
    raise ValueError("must be a day, YYYY-MM-DD")


Day = Annotated[date, BeforeValidator(_iso_day)]


def known(values: str) -> Any:
    """``Annotated`` metadata: the field's values are the service's ``values`` set (an ``enum`` in
    the OpenAPI document). E.g. ``Annotated[Code, known("templates")]``."""
    return Field(json_schema_extra={VALUES_KEY: values})


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/London)") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_zone), known("timezones"),
                         Field(description="IANA time zone, e.g. Europe/London")]


class WeeklySlotIn(WeeklySlot):
    """A weekly window as a caller sends it (``weekday`` 1–7 as a JSON integer, never ``"2"``)."""

    weekday: Integer = Field(ge=1, le=7, description="ISO weekday, 1 = Monday")


def time_zones() -> list[str]:
    """The zones ``TimeZoneName`` lists (every IANA name this machine's tz database has)."""
    return sorted(z for z in available_timezones() if _loads(z))


def _loads(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


__all__ = ["Day", "Integer", "TIMESTAMP_RULE", "TimeZoneName", "Timestamp", "VALUES_KEY", "WeeklySlotIn", "known",
           "time_zones"]
