"""Rebuilding a service's projection by replay (docs/replay.md, "Rebuilding projections").

A service's **projection** is the part of its state derived from the topics it consumes; each
service declares it in ``rapport_<svc>/projection.py`` as tables (or a subset of a table's rows or
columns: ``rapport_shared.projection``). The rest of its state is a *record of authority* (what
people entered over HTTP, what was sent to the outside world): Kafka cannot rebuild it and replay
never touches it.

``rapport-<svc> replay run`` builds the service's own runtime (same code, same migrations) against
a fresh **shadow** schema and a fresh consumer group, with the outbox relay off (events it emits
stay in the shadow outbox: the live service already published them) and ``replay_mode`` on (the
notifier sends nothing), reads every consumed topic from the beginning (or from a time) up to the
end offsets seen when it started, and stops. ``verify`` compares a content hash per projection
table between shadow and live; ``swap`` (live consumers stopped, both groups at the same offsets)
replaces the live projection with the shadow's in one transaction, after copying the live tables
to a backup schema.

The shadow schema is created with the admin DSN and owned by the service's own role, so the
replaying service runs with exactly the rights it has live.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import asyncpg

from rapport_shared import db
from rapport_shared.logging import get_logger
from rapport_shared.projection import Projection, Table
from rapport_shared.settings import ServiceSettings

from .kafka_ops import (Conn, apply_reset, committed_offsets, describe_group, list_topic_names, plan_reset,
                        topic_end_offsets, topic_infos)

log = get_logger(__name__)

META = "replay_meta"


class ReplayError(Exception):
    """A refusal, printed without a traceback."""


def _q(name: str) -> str:
    return db.ident(name)


# ------------------------------------------------------------------------------------ hashing

async def columns_of(conn: asyncpg.Connection, schema: str, table: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT column_name, column_default, is_identity FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position", schema, table)
    if not rows:
        raise ReplayError(f"no table {schema}.{table}")
    return [dict(r) for r in rows]


async def hashed_columns(conn: asyncpg.Connection, schema: str, t: Table) -> list[str]:
    names = [c["column_name"] for c in await columns_of(conn, schema, t.name)]
    chosen = list(t.columns) if t.columns is not None else names
    unknown = [c for c in (*chosen, *t.key, *t.exclude) if c not in names]
    if unknown:
        raise ReplayError(f"{t.name}: unknown column(s) {', '.join(unknown)}")
    return [c for c in chosen if c not in t.exclude]


def _rows_sql(t: Table, cols: Sequence[str]) -> tuple[str, str, str]:
    """The SQL pieces both comparisons use: (projection columns as a row, key columns, the rows'
    WHERE over alias ``r``)."""
    return (", ".join(_q(c) for c in cols), ", ".join(_q(k) for k in t.key),
            f" WHERE {t.rows('r')}" if t.where else "")


async def table_hash(conn: asyncpg.Connection, schema: str, t: Table, cols: Sequence[str]) -> tuple[int, str]:
    """(rows, md5 of the rows' text in key order) over the projection columns of ``t``."""
    row, key, where = _rows_sql(t, cols)
    r = await conn.fetchrow(
        f"SELECT count(*) AS n, md5(coalesce(string_agg(ROW({row})::text, E'\\n' ORDER BY {key}), ''))"
        f" AS h FROM {_q(schema)}.{_q(t.name)} r{where}")
    return r["n"], r["h"]


DIFFERING_SHOWN = 10  # keys named per differing table: enough to start from, never a dump


async def differing_keys(conn: asyncpg.Connection, live: str, shadow: str, t: Table, cols: Sequence[str],
                         limit: int = DIFFERING_SHOWN) -> list[str]:
    """The keys (``/``-joined, in key order) of the projection rows that are in one schema and not
    the other, or differ in a hashed column: which rows to look at when the hashes differ. Keys
    only, never the columns' values (they may hold health data)."""
    row, key, where = _rows_sql(t, cols)

    def side(schema: str) -> str:
        return f"SELECT {key}, ROW({row})::text AS v FROM {_q(schema)}.{_q(t.name)} r{where}"

    rows = await conn.fetch(
        f"SELECT DISTINCT {key} FROM (({side(live)} EXCEPT {side(shadow)}) UNION ALL"
        f" ({side(shadow)} EXCEPT {side(live)})) d ORDER BY {key} LIMIT {int(limit)}")
    return ["/".join(str(v) for v in r.values()) for r in rows]


@dataclass
class TableCheck:
    table: str
    live_rows: int
    shadow_rows: int
    live_hash: str
    shadow_hash: str
    differing: list[str] = field(default_factory=list)  # the first keys that differ (DIFFERING_SHOWN)

    @property
    def equal(self) -> bool:
        return self.live_hash == self.shadow_hash and self.live_rows == self.shadow_rows


async def verify(conn: asyncpg.Connection, projection: Projection, live: str, shadow: str) -> list[TableCheck]:
    out = []
    for t in projection.tables:
        cols = await hashed_columns(conn, live, t)
        ln, lh = await table_hash(conn, live, t, cols)
        sn, sh = await table_hash(conn, shadow, t, cols)
        check = TableCheck(t.name, ln, sn, lh, sh)
        if not check.equal:
            check.differing = await differing_keys(conn, live, shadow, t, cols)
        out.append(check)
    return out


# ------------------------------------------------------------------------------------ the shadow

def default_names(settings: ServiceSettings, now: datetime | None = None) -> tuple[str, str]:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    return f"{settings.db_schema}_replay_{stamp}", f"{settings.consumer_group}-replay-{stamp}"


async def create_shadow(admin_dsn: str, service_dsn: str, shadow: str) -> str:
    """Create the empty shadow schema owned by the service's role; returns that role."""
    conn = await asyncpg.connect(service_dsn)
    try:
        role = await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()
    admin = await asyncpg.connect(admin_dsn)
    try:
        if await admin.fetchval("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", shadow):
            raise ReplayError(f"schema {shadow} already exists: pick another --shadow or drop it first")
        await admin.execute(f"CREATE SCHEMA {_q(shadow)} AUTHORIZATION {_q(role)}")
        await admin.execute(f"REVOKE ALL ON SCHEMA {_q(shadow)} FROM PUBLIC")
    finally:
        await admin.close()
    return role


async def drop_shadow(admin_dsn: str, shadow: str, live: str, kc=None) -> list[str]:
    """Drop the shadow schema and the replay group's dead-letter topics that stayed empty; returns
    the DLQ topics kept because they hold records (look at them with `rapport dlq list`)."""
    if shadow == live:
        raise ReplayError("refusing to drop the live schema")
    admin = await asyncpg.connect(admin_dsn)
    try:
        meta = await read_meta(admin, shadow)
        await admin.execute(f"DROP SCHEMA {_q(shadow)} CASCADE")
    finally:
        await admin.close()
    if kc is None:
        return []

    group = meta["group"]
    mine = [t for t in await list_topic_names(kc) if t.endswith(f".dlq.{group}") or t.endswith(f".dlq.{group}-contacts")]
    infos = await topic_infos(kc, mine) if mine else []
    empty = [i.name for i in infos if i.records == 0]
    if empty:
        client = kc.admin()
        await client.start()
        try:
            await client.delete_topics(empty)
        finally:
            await client.close()
    return [i.name for i in infos if i.records]


async def prepare(conn: asyncpg.Connection, settings: ServiceSettings, migrations: list, projection: Projection,
                  shadow: str, group: str, since: datetime | None) -> None:
    """Migrate the shadow, copy the seed tables, record what this replay is."""
    await db.migrate(conn, shadow, migrations)
    async with conn.transaction():
        for table in projection.seed:
            await conn.execute(f"INSERT INTO {_q(shadow)}.{_q(table)} SELECT * FROM {_q(settings.db_schema)}.{_q(table)}")
        await conn.execute(f"CREATE TABLE {_q(shadow)}.{META} (key text PRIMARY KEY, value jsonb NOT NULL)")
        meta = {"service": settings.service_name, "live_schema": settings.db_schema, "group": group,
                "live_group": settings.consumer_group, "since": since.isoformat() if since else None,
                "started_at": datetime.now(timezone.utc).isoformat()}
        for k, v in meta.items():
            await conn.execute(f"INSERT INTO {_q(shadow)}.{META} VALUES ($1, $2::jsonb)", k, json.dumps(v))


async def read_meta(conn: asyncpg.Connection, shadow: str) -> dict[str, Any]:
    if not await conn.fetchval(f"SELECT to_regclass('{shadow}.{META}') IS NOT NULL"):
        raise ReplayError(f"{shadow} is not a replay shadow (no {META} table)")
    return {r["key"]: json.loads(r["value"]) for r in await conn.fetch(f"SELECT key, value FROM {_q(shadow)}.{META}")}


async def set_meta(conn: asyncpg.Connection, shadow: str, key: str, value: Any) -> None:
    await conn.execute(f"INSERT INTO {_q(shadow)}.{META} VALUES ($1, $2::jsonb) ON CONFLICT (key) DO UPDATE"
                       " SET value = EXCLUDED.value", key, json.dumps(value))


# ------------------------------------------------------------------------------------ Kafka positions

def kafka_conn(settings: ServiceSettings):
    sec = settings.kafka_security()
    return Conn(bootstrap=settings.kafka_bootstrap, security_protocol=sec.security_protocol or "PLAINTEXT",
                sasl_mechanism=sec.sasl_mechanism or None, sasl_username=sec.sasl_username or None,
                sasl_password=sec.sasl_password.get_secret_value() or None, client_id="rapport-replay")


async def end_offsets(conn, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    return await topic_end_offsets(conn, topics)


async def committed(conn, group: str) -> dict[tuple[str, int], int]:
    return await committed_offsets(conn, group)


def behind(target: dict[tuple[str, int], int], have: dict[tuple[str, int], int]) -> int:
    """Records between ``have`` and ``target`` (0 = caught up)."""
    return sum(max(0, end - have.get(tp, 0)) for tp, end in target.items())


async def start_at(conn, group: str, topics: Sequence[str], since: datetime) -> None:
    """Point a fresh group at the first offsets stamped at or after ``since``."""

    await apply_reset(conn, await plan_reset(conn, group, topics, to="datetime", at=since))


async def groups_with_members(conn, groups: Sequence[str]) -> list[str]:
    return [f"{g} ({state}, {n} member(s))" for g in groups
            for state, n in [await describe_group(conn, g)] if n or state not in ("Empty", "Dead")]


# ------------------------------------------------------------------------------------ run

def consumed_topics(runtime, group: str) -> list[str]:
    """The topics the service's consumers read, from a dry registration (nothing starts)."""
    from rapport_shared.consumer import EventConsumer

    probe = EventConsumer(pool=None, group_id=group, dead_letter=None, outbox=runtime.outbox)  # type: ignore[arg-type]
    if runtime.handlers is not None:  # the service's handler registry is its subscription
        runtime.handlers.subscribe(probe)
    if runtime.register_handlers:
        runtime.register_handlers(runtime, probe)
    return list(probe.topics)


async def idle_in_shadow(pool: asyncpg.Pool, now: datetime) -> bool:
    """No timer due and unfired in the shadow (timers fire as simulated/real time says; a parked
    timer waits for an operator, not for the replay)."""
    async with pool.acquire() as c:
        if not await c.fetchval("SELECT to_regclass('timers') IS NOT NULL"):
            return True
        return not await c.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
                                    " AND failed_at IS NULL AND parked_at IS NULL AND due_at <= $1", now)


async def run(settings: ServiceSettings, build_app: Callable, projection: Projection, *, admin_dsn: str,
              shadow: str, group: str, since: datetime | None = None, timeout_s: float = 3600,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Rebuild the projection into ``shadow``; returns a summary. Resumes an existing shadow."""
    if not projection.tables:
        raise ReplayError(projection.note)
    if shadow == settings.db_schema:
        raise ReplayError("the shadow cannot be the live schema")
    replay_settings = settings.model_copy(update={
        "db_schema": shadow, "consumer_group": group, "relay_enabled": False, "auto_offset_reset": "earliest",
        "migrate_on_start": False, "replay_mode": True})
    runtime = build_app(replay_settings).state.runtime
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        fresh = not await conn.fetchval(f"SELECT to_regclass('{shadow}.{META}') IS NOT NULL")
        if fresh:
            await conn.close()
            await create_shadow(admin_dsn, settings.database_dsn, shadow)
            conn = await asyncpg.connect(settings.database_dsn)
            await prepare(conn, settings, runtime.migrations, projection, shadow, group, since)
        else:
            meta = await read_meta(conn, shadow)
            if meta["group"] != group:
                raise ReplayError(f"{shadow} was built by group {meta['group']}, not {group}")
    finally:
        await conn.close()
    kc = kafka_conn(settings)
    topics = consumed_topics(runtime, group)
    if fresh and since is not None:  # a fresh group starts where `since` points, not at the beginning
        await start_at(kc, group, topics, since)
    started = time.monotonic()
    base = await committed(kc, group)
    targets = {group: await end_offsets(kc, topics)}
    for sfx, extra in projection.extra_groups.items():
        targets[group + sfx] = await end_offsets(kc, list(extra))
    total = sum(behind(t, base if g == group else {}) for g, t in targets.items())
    await runtime.start()
    try:
        while True:
            left = 0
            for g, target in targets.items():
                left += behind(target, await committed(kc, g))
            if progress:
                progress(total - left, total)
            if left == 0 and await idle_in_shadow(runtime.pool, runtime.clock.now()):
                break
            if time.monotonic() - started > timeout_s:
                raise ReplayError(f"replay did not catch up within {timeout_s:.0f} s ({left} record(s) left)")
            await asyncio.sleep(0.5)
        # A fired timer may arm another one due at once: settle before stopping.
        await asyncio.sleep(1.0)
        while not await idle_in_shadow(runtime.pool, runtime.clock.now()):
            await asyncio.sleep(0.5)
    finally:
        await runtime.stop()
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        await set_meta(conn, shadow, "finished_at", datetime.now(timezone.utc).isoformat())
        await set_meta(conn, shadow, "offsets", {f"{t}:{p}": o for (t, p), o in (await committed(kc, group)).items()})
    finally:
        await conn.close()
    return {"shadow": shadow, "group": group, "records": total, "seconds": round(time.monotonic() - started, 1)}


# ------------------------------------------------------------------------------------ swap

def offsets_differ(mine: dict[tuple[str, int], int], theirs: dict[tuple[str, int], int]) -> list[str]:
    """Partitions (of the topics the replay read) where the two groups stand at different offsets."""
    topics = {t for t, _ in mine}
    parts = set(mine) | {tp for tp in theirs if tp[0] in topics}
    return sorted(f"{t}:{p} replay={mine.get((t, p), 0)} live={theirs.get((t, p), 0)}"
                  for t, p in parts if mine.get((t, p), 0) != theirs.get((t, p), 0))


@dataclass
class SwapPlan:
    table: str
    updated: int
    inserted: int
    deleted: int


async def swap(settings: ServiceSettings, projection: Projection, *, admin_dsn: str, shadow: str,
               apply: bool) -> tuple[list[SwapPlan], str | None]:
    """Replace the live projection with the shadow's. Refuses while the live consumers run or when
    the two groups are not at the same offsets (the projections would describe different histories)."""
    kc = kafka_conn(settings)
    conn = await asyncpg.connect(admin_dsn)
    try:
        meta = await read_meta(conn, shadow)
        live, group, live_group = meta["live_schema"], meta["group"], meta["live_group"]
        if meta.get("finished_at") is None:
            raise ReplayError(f"the replay into {shadow} has not finished: run `replay run --shadow {shadow}` first")
        active = await groups_with_members(kc, [live_group, *(live_group + s for s in projection.extra_groups)])
        if active:
            raise ReplayError(f"stop the live service first: {', '.join(active)}")
        differ: list[str] = []
        for sfx in ("", *projection.extra_groups):  # e.g. the notifier's contacts reader too
            differ += offsets_differ(await committed(kc, group + sfx), await committed(kc, live_group + sfx))
        if differ:
            raise ReplayError("the replay and the live group are at different offsets (" + "; ".join(differ) +
                              f"): let the live service catch up and stop it, then `replay run --shadow {shadow}`"
                              " again to bring the shadow to the same point")
        backup = f"{live}_before_swap_{datetime.now(timezone.utc).strftime('%Y%m%d%H%M%S')}"
        plans: list[SwapPlan] = []
        async with conn.transaction():
            if apply:
                await conn.execute(f"CREATE SCHEMA {_q(backup)}")
            for t in projection.tables:
                plans.append(await _swap_table(conn, t, live, shadow, backup if apply else None))
            if not apply:
                raise _DryRun()
    except _DryRun:
        return plans, None
    finally:
        await conn.close()
    return plans, backup


class _DryRun(Exception):
    pass


async def _swap_table(conn: asyncpg.Connection, t: Table, live: str, shadow: str, backup: str | None) -> SwapPlan:
    cols = await hashed_columns(conn, live, t)
    L, S = f"{_q(live)}.{_q(t.name)}", f"{_q(shadow)}.{_q(t.name)}"
    on = " AND ".join(f"l.{_q(k)} = s.{_q(k)}" for k in t.key)
    only_live = f"FROM {L} l WHERE NOT EXISTS (SELECT 1 FROM {S} s WHERE {on}) AND {t.rows('l')}"
    only_shadow = f"FROM {S} s WHERE NOT EXISTS (SELECT 1 FROM {L} l WHERE {on}) AND {t.rows('s')}"
    n_del = await conn.fetchval(f"SELECT count(*) {only_live}")
    n_ins = await conn.fetchval(f"SELECT count(*) {only_shadow}")
    if t.partial_columns and (n_del or n_ins):
        raise ReplayError(f"{t.name}: {n_ins} row(s) only in the shadow and {n_del} only in live, but only some of"
                          " its columns are projection: rows cannot be added or removed by a swap")
    changed = f"ROW({', '.join('l.' + _q(c) for c in cols)}) IS DISTINCT FROM ROW({', '.join('s.' + _q(c) for c in cols)})"
    n_upd = await conn.fetchval(f"SELECT count(*) FROM {L} l JOIN {S} s ON {on} WHERE {changed} AND {t.rows('l')}")
    if backup is not None:
        await conn.execute(f"CREATE TABLE {_q(backup)}.{_q(t.name)} AS SELECT * FROM {L}")
        if n_del:
            await conn.execute(f"DELETE {only_live}")
        if n_upd:
            sets = ", ".join(f"{_q(c)} = s.{_q(c)}" for c in cols if c not in t.key)
            await conn.execute(f"UPDATE {L} l SET {sets} FROM {S} s WHERE {on} AND {changed} AND {t.rows('l')}")
        if n_ins:
            info = await columns_of(conn, live, t.name)
            # Local sequence numbers are the live table's own: let it number the new rows.
            copy = [c["column_name"] for c in info
                    if not (str(c["column_default"] or "").startswith("nextval(") or c["is_identity"] == "YES")]
            names = ", ".join(_q(c) for c in copy)
            await conn.execute(f"INSERT INTO {L} ({names}) SELECT {', '.join('s.' + _q(c) for c in copy)} {only_shadow}")
    return SwapPlan(t.name, n_upd, n_ins, n_del)
