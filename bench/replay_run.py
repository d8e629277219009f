"""(d) Replay: ``rapport-outcomes replay run --shadow <new> --no-verify`` as an operator runs it — a
separate process with the live outcomes service's environment and ``RAPPORT_ADMIN_DSN`` (as
tests/e2e/replay/test_replay_e2e.py does) — over everything on the topics outcomes consumes
(``rapport.intake``, ``rapport.course`` and ``rapport.notifications``), once every live group has caught up.

Two times: the command's own (its "in X s": from just before the shadow runtime starts — group
join, then every record: decode, inbox, handler, commit — to the end, which includes its 0.5 s
progress poll and the 1 s settle it waits before stopping), and the whole command's wall time
(interpreter start, imports, creating and migrating the shadow schema). Records/s is the
command's record count over each. Afterwards (not timed) ``replay verify`` must find the shadow
equal to live, and ``replay drop`` removes it. In the same run, on the same broker, a bare aiokafka
consumer group reads the same topics (``bench/bare.py``), and the ratio is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid

import bare
from figures import Figure, rate

from services import caught_up

NAME = "replay"
SERVICE = "outcomes"
SUMMARY = re.compile(r"replayed (\d+) record\(s\) into \S+ with group \S+\s+in ([\d.]+) s")


def consumed_topics() -> list[str]:
    """The topics the replay reads: every one outcomes' handlers subscribe to (rapport.notifications
    too, since the FHIR record's Communications), so the bare consumer reads the same records."""
    from rapport_outcomes.service_layer.handlers import handlers  # noqa: PLC0415 - a service, only here

    return sorted({m.topic for m in handlers.event_models})


def replay(running, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **running.system[SERVICE].env, "RAPPORT_ADMIN_DSN": running.admin_dsn, "COLUMNS": "200"}
    env.pop("RAPPORT_CRASH_AT", None)
    return subprocess.run([sys.executable, "-m", f"rapport_{SERVICE}", "replay", *args], env=env,
                          capture_output=True, text=True, timeout=3600)


async def run(running, episodes: int) -> list[Figure]:
    await caught_up(running.bootstrap)
    shadow = f"{SERVICE}_replay_bench_{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    done = await asyncio.to_thread(replay, running, "run", "--shadow", shadow, "--no-verify")
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"replay run failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    found = SUMMARY.search(" ".join(done.stdout.split()))
    if not found:
        raise RuntimeError(f"unexpected replay output:\n{done.stdout}")
    records, seconds = int(found.group(1)), float(found.group(2))
    try:
        checked = await asyncio.to_thread(replay, running, "verify", "--shadow", shadow, "--json")
        checks = json.loads(checked.stdout)
        if not (checks and all(c["equal"] for c in checks)):
            raise RuntimeError(f"the replayed projection differs from live: {checks}")
    finally:
        await asyncio.to_thread(replay, running, "drop", "--shadow", shadow, "--apply")
    cohort = f"{episodes + 1} episodes (incl. warm-up)"
    bare_s = await bare.consume(running.bootstrap, consumed_topics(), records)
    return [
        rate(NAME, f"rapport-{SERVICE} replay run: its own time", records, seconds, unit="records/s",
             note=f"{cohort}; shadow verified equal to live; includes group join and ~1.5 s poll/settle"),
        rate(NAME, f"rapport-{SERVICE} replay run: command wall time", records, wall, unit="records/s",
             note="adds interpreter start, imports, shadow schema creation and migration"),
        rate(NAME, "bare aiokafka consumer group over the same topics", records, bare_s, unit="records/s",
             note="getmany + one commit per batch, from the first batch (as bench/bare.py)"),
        Figure(NAME, "replay (its own time) ÷ bare consumer", records, rate=bare_s / seconds, unit="×",
               note="the replay's own time includes its group join and ~1.5 s of poll and settle"),
    ]
