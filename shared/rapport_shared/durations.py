"""One duration type for every setting and payload: a ``timedelta``.

Accepted spellings (so existing environment values keep working): ISO 8601 (``PT24H``,
``P2D``, pydantic's own parsing), a number of seconds (``90``, ``0.5``), or a number with one
unit ``s``/``m``/``h``/``d``/``w`` (``24h``, ``15m``, ``2d``). Negative durations are refused.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, TypeAdapter

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: Any) -> Any:
    """``24h``/``15m``/``2d`` → ``timedelta``; anything else is left to pydantic (ISO 8601,
    seconds). Refuses a negative result."""
    if isinstance(value, str) and (m := _SHORT.match(value)):
        value = timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    if isinstance(value, timedelta) and value < timedelta(0):
        raise ValueError("must not be negative")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value



Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_not_negative)]

_adapter: TypeAdapter[timedelta] = TypeAdapter(Duration)


def duration(value: Any) -> timedelta:
    """Parse one duration outside a model (raises ``ValueError`` naming the reason)."""
    return _adapter.validate_python(value)
