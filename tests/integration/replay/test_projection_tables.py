"""The table side of replay (shared/rapport_tools/replay.py) against real Postgres: what the
content hash covers, and what a swap may and may not change."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from rapport_tools import replay as R

pytestmark = pytest.mark.integration

DDL = """
CREATE TABLE {s}.items (id int PRIMARY KEY, kind text NOT NULL, value text, seen_at timestamptz,
                        seq bigserial);
CREATE TABLE {s}.mixed (id int PRIMARY KEY, derived text, entered text);
"""
ITEMS = R.Table("items", key=("id",), where="{r}.kind = 'derived'", exclude=("seen_at", "seq"))
MIXED = R.Table("mixed", key=("id",), columns=("id", "derived"))
P = R.Projection(tables=(ITEMS, MIXED), note="test")


@pytest.fixture
async def schemas(postgres):
    conn = await asyncpg.connect(postgres.admin_dsn)
    tag = uuid.uuid4().hex[:8]
    live, shadow = f"rp_live_{tag}", f"rp_shadow_{tag}"
    for s in (live, shadow):
        await conn.execute(f"CREATE SCHEMA {s}")
        await conn.execute(DDL.format(s=s))
    yield conn, live, shadow
    for s in (live, shadow):
        await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {live}_backup CASCADE")
    await conn.close()


async def fill(conn, schema, items, mixed):
    for row in items:
        await conn.execute(f"INSERT INTO {schema}.items (id, kind, value, seen_at) VALUES ($1, $2, $3, now())", *row)
    for row in mixed:
        await conn.execute(f"INSERT INTO {schema}.mixed VALUES ($1, $2, $3)", *row)


async def equal(conn, live, shadow) -> dict[str, bool]:
    return {c.table: c.equal for c in await R.verify(conn, P, live, shadow)}


async def test_hash_covers_projection_rows_and_columns_only(schemas):
    conn, live, shadow = schemas
    await fill(conn, live, [(1, "derived", "a"), (2, "derived", "b"), (3, "entered", "x")], [(1, "d", "typed by hand")])
    await fill(conn, shadow, [(2, "derived", "b"), (1, "derived", "a")], [(1, "d", None)])
    assert await equal(conn, live, shadow) == {"items": True, "mixed": True}  # authority rows/columns ignored
    await conn.execute(f"UPDATE {shadow}.items SET seen_at = now() - interval '1 day', seq = 99")
    assert (await equal(conn, live, shadow))["items"]  # bookkeeping columns are not content
    await conn.execute(f"UPDATE {shadow}.items SET value = 'B' WHERE id = 2")
    await conn.execute(f"UPDATE {shadow}.mixed SET derived = 'D'")
    assert await equal(conn, live, shadow) == {"items": False, "mixed": False}
    # Which rows to look at: their keys (missing on one side, or a hashed column changed), never values.
    await conn.execute(f"INSERT INTO {live}.items (id, kind, value) VALUES (7, 'derived', 'only live')")
    checks = {c.table: c for c in await R.verify(conn, P, live, shadow)}
    assert checks["items"].differing == ["2", "7"] and checks["mixed"].differing == ["1"]
    assert not any("only live" in k or "B" in k for k in checks["items"].differing)


async def test_swap_makes_live_equal_to_the_shadow_and_keeps_a_backup(schemas):
    conn, live, shadow = schemas
    await fill(conn, live, [(1, "derived", "stale"), (2, "derived", "gone"), (3, "entered", "keep")], [(1, "old", "typed")])
    await fill(conn, shadow, [(1, "derived", "fresh"), (4, "derived", "new")], [(1, "new", None)])
    await conn.execute(f"CREATE SCHEMA {live}_backup")
    plans = [await R._swap_table(conn, t, live, shadow, f"{live}_backup") for t in P.tables]
    assert [(p.table, p.updated, p.inserted, p.deleted) for p in plans] == [("items", 1, 1, 1), ("mixed", 1, 0, 0)]
    assert await equal(conn, live, shadow) == {"items": True, "mixed": True}
    rows = await conn.fetch(f"SELECT id, kind, value FROM {live}.items ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "derived", "fresh"), (3, "entered", "keep"), (4, "derived", "new")]
    assert await conn.fetchval(f"SELECT entered FROM {live}.mixed WHERE id = 1") == "typed"  # authority column kept
    # The new row was numbered by the live table's own sequence, not copied from the shadow's.
    assert await conn.fetchval(f"SELECT seq FROM {live}.items WHERE id = 4") == 4
    assert await conn.fetchval(f"SELECT count(*) FROM {live}_backup.items") == 3


async def test_swap_refuses_to_add_or_remove_rows_of_a_partly_projected_table(schemas):
    conn, live, shadow = schemas
    await fill(conn, live, [], [(1, "a", "typed")])
    await fill(conn, shadow, [], [(1, "a", None), (2, "b", None)])
    with pytest.raises(R.ReplayError, match="mixed: 1 row\\(s\\) only in the shadow"):
        async with conn.transaction():
            await R._swap_table(conn, MIXED, live, shadow, None)
    assert await conn.fetchval(f"SELECT count(*) FROM {live}.mixed") == 1
