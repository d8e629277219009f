"""Plans: the notifier's durable timers (``rapport_shared.timers``), bound to the unit of work's
connection so a plan is armed or cancelled in the transaction of the change that decides it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

import asyncpg

from rapport_shared.timers import Plan, TimerStore


class Plans:
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn, self.store = conn, TimerStore(schema)

    async def schedule(self, kind: str, key: str, due_at: datetime, *, now: datetime,
                       payload: Mapping[str, Any] | None = None) -> None:
        await self.store.schedule(self.conn, kind, key, due_at, now=now, payload=payload)

    async def schedule_many(self, plans: Iterable[Plan], *, now: datetime) -> None:
        await self.store.schedule_many(self.conn, plans, now=now)

    async def cancel(self, kind: str, key: str, *, now: datetime) -> bool:
        return await self.store.cancel(self.conn, kind, key, now=now)
