"""Waiting in tests for something the system does asynchronously, without asserting a duration."""

from __future__ import annotations

import asyncio
import time


async def until(predicate, timeout: float = 90, what: str = "condition"):
    """Poll ``predicate`` (plain or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")
