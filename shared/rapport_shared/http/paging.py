"""Keyset paging for list endpoints: a page ordered by (time, id) carries ``next``, the ``after``
of the following page. Stable while new rows are written (no offsets that shift)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from .errors import Invalid


def cursor(at: datetime, row_id: uuid.UUID) -> str:
    # UTC with "Z": no "+" that a query string would turn into a space when pasted unencoded.
    return f"{at.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}/{row_id}"


def parse_cursor(after: str | None) -> tuple[datetime, uuid.UUID] | tuple[None, None]:
    """``after`` from a previous page's ``next`` → (time, id); a bad one is 422 naming ``after``."""
    if not after:
        return None, None
    try:
        at, _, row_id = after.rpartition("/")
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except ValueError:
        raise Invalid("not a cursor from a previous page's `next`", field="after") from None
