"""Keyset paging for list endpoints: a page ordered by (time, id) carries ``next``, the ``after``
of the following page. Stable while new rows are written (no offsets that shift).

A cursor is ``<microseconds since 1970-01-01T00:00Z>/<uuid>``, e.g.
``1767258000000000/0b0c5d5e-8f6a-4c1e-9a59-2f1d2f7c9e10``: every string of that shape
(``CURSOR_PATTERN``, declared on the ``after`` parameter) is a position in the list, so the
OpenAPI document says exactly which values are accepted; anything else is 422 naming ``after``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

from fastapi import Query

from .errors import Invalid

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Up to 16 digits: until the year 2286. The uuid as ``str(UUID)`` writes it.
CURSOR_PATTERN = r"^[0-9]{1,16}/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def cursor(at: datetime, row_id: uuid.UUID) -> str:
    delta = at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}/{row_id}"


def parse_cursor(after: str | None) -> tuple[datetime, uuid.UUID] | tuple[None, None]:
    """``after`` from a previous page's ``next`` → (time, id); a bad one is 422 naming ``after``."""
    if after is None:
        return None, None
    if not _CURSOR.match(after):
        raise Invalid("not a cursor from a previous page's `next`", field="after")
    micros, _, row_id = after.partition("/")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(row_id)


def after_query(description: str = "the previous page's `next`"):
    """The ``after`` query parameter. Its pattern is declared in the document only: the route
    checks it with :func:`parse_cursor`, whose 422 names ``after`` (not ``query.after``)."""
    return Query(None, description=description, json_schema_extra={"pattern": CURSOR_PATTERN})
