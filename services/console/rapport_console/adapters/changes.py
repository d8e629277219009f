"""Live updates: one LISTEN connection per process fans the read model's change notices out to
the open pages (server-sent events).

A handler NOTIFYs ``<schema>.changes`` with ``"<episode id> <kind>"`` in its transaction, so a
page hears of a change only once it is committed and readable. The notice carries no health
data; the page fetches its own new content (access checked again).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from rapport_shared.retry import RetryPolicy

from rapport_shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Change:
    episode_id: UUID
    kind: str
    seq: int = 0


class ChangeFeed:
    """Fans notices out to subscribers, numbering them; the last ``history`` are kept so a page
    that reconnects (``Last-Event-ID``) is told what it missed, or to refresh when it cannot be."""


    def __init__(self, channel: str, *, queue_size: int = 100, retry_s: float = 2.0, history: int = 1000) -> None:
        self.channel = channel
        self.queue_size = queue_size
        self.retry_s = retry_s
        self.epoch = secrets.token_hex(4)  # a restarted process numbers anew: ids of another epoch are stale
        self.seq = 0
        self._history: deque[Change] = deque(maxlen=history)
        self._subscribers: set[asyncio.Queue[Change]] = set()

    def event_id(self, seq: int | None = None) -> str:
        return f"{self.epoch}-{self.seq if seq is None else seq}"

    def missed(self, last_event_id: str | None) -> list[Change] | None:
        """Changes after ``last_event_id``: [] when none, None when it cannot tell (another
        process, or older than the history kept): the page should then refresh."""
        if not last_event_id:
            return []
        epoch, _, seq = last_event_id.partition("-")
        if epoch != self.epoch or not seq.isdigit():
            return None
        after = int(seq)
        if after > self.seq or (self._history and after < self._history[0].seq - 1):
            return None
        return [c for c in self._history if c.seq > after]

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        episode, _, kind = payload.partition(" ")
        try:
            change = Change(UUID(episode), kind or "change", self.seq + 1)
        except ValueError:
            return
        self.seq = change.seq
        self._history.append(change)
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):  # a stalled page loses notices, not the process
                q.put_nowait(change)

    @contextlib.contextmanager
    def subscribe(self):
        q: asyncio.Queue[Change] = asyncio.Queue(self.queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    async def run(self, pool: asyncpg.Pool) -> None:
        """Hold the LISTEN connection until cancelled; reconnect when Postgres goes away."""
        waits = RetryPolicy(initial_s=self.retry_s, max_s=30.0).delays()
        while True:
            conn = None
            try:
                conn = await pool.acquire()
                await conn.add_listener(self.channel, self._on_notify)
                while not conn.is_closed():
                    await asyncio.sleep(self.retry_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change feed lost its connection; reconnecting", error=type(exc).__name__)
                await asyncio.sleep(next(waits))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(self.channel, self._on_notify)
                    with contextlib.suppress(Exception):
                        await pool.release(conn)
