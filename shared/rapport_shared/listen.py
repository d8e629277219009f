"""A worker loop driven by Postgres LISTEN/NOTIFY with a polling fallback.

The outbox relay, the timer runner and intake's contacts relay all work the same way: do a pass
over a queue table, then sleep until a transaction NOTIFYs the channel (delivered only when it
commits) or the poll interval runs out; if Postgres or Kafka is away, keep the rows and retry with
the shared backoff (``retry.RetryPolicy``: capped, exponential, jittered). This is that loop, once.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import asyncpg

from .logging import get_logger
from .retry import RetryPolicy

log = get_logger(__name__)


async def drain_batches(batch: Callable[[], Awaitable[int]], batch_size: int) -> int:
    """Run ``batch`` until it handles nothing or less than a full batch; returns the total."""
    total = 0
    while n := await batch():
        total += n
        if n < batch_size:
            break
    return total


class NotifyLoop:
    def __init__(self, pool: asyncpg.Pool, channel: str, *, poll_interval_s: float, what: str,
                 max_backoff_s: float = 30.0) -> None:
        self.pool = pool
        self.channel = channel
        self.poll_interval_s = poll_interval_s
        self.what = what
        self.max_backoff_s = max_backoff_s
        self.wake = asyncio.Event()
        self._stopping = False

    @property
    def backoff(self) -> RetryPolicy:
        """Waits after a failed pass: from the poll interval up to ``max_backoff_s``."""
        return RetryPolicy(initial_s=self.poll_interval_s, max_s=self.max_backoff_s)

    def _on_notify(self, *_: object) -> None:
        self.wake.set()

    async def sleep_until_woken(self, timeout: float | None = None) -> None:
        """The default idle wait: a NOTIFY, a stop, or the poll interval."""
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=self.poll_interval_s if timeout is None else timeout)
        except asyncio.TimeoutError:
            pass

    async def run(self, work: Callable[[], Awaitable[object]], idle: Callable[[], Awaitable[None]] | None = None) -> None:
        listener: asyncpg.Connection | None = None
        failures = 0  # passes failed in a row
        while not self._stopping:
            try:
                if listener is None or listener.is_closed():
                    listener = await self.pool.acquire()
                    await listener.add_listener(self.channel, self._on_notify)
                self.wake.clear()  # before the pass: a NOTIFY during it wakes the next wait
                await work()
                failures = 0  # a pass went through: the next outage starts short
                await (idle or self.sleep_until_woken)()
            except asyncio.CancelledError:
                break
            except Exception as exc:  # Postgres or Kafka away: the rows wait, nothing is lost
                failures += 1
                delay = self.backoff.delay(failures)
                log.warning(f"{self.what} pass failed; will retry", error=repr(exc), retry_in_s=round(delay, 3))
                if listener is not None:
                    await self._release(listener)
                    listener = None
                await asyncio.sleep(delay)
        if listener is not None:
            await self._release(listener)

    async def _release(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.remove_listener(self.channel, self._on_notify)
        except Exception:
            pass
        try:
            await self.pool.release(conn)
        except Exception:
            pass

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
