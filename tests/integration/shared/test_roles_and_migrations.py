"""Each service's Postgres role reaches only its own schema; migrations are ordered and guarded."""

import secrets
import uuid
from pathlib import Path

import asyncpg
import pytest

from rapport_shared import db
from rapport_testing.services import SERVICES, role_dsn

pytestmark = pytest.mark.integration
SERVICE_MIGRATIONS = {name: Path(__import__(f"rapport_{name}").__file__).parent / "migrations" for name in SERVICES}


@pytest.fixture(scope="module")
async def migrated(service_dsns):
    for name in SERVICES:
        conn = await asyncpg.connect(service_dsns[name])
        try:
            await db.migrate(conn, name, db.discover(SERVICE_MIGRATIONS[name]))
        finally:
            await conn.close()
    return service_dsns


@pytest.mark.parametrize("reader,owner", [(r, o) for r in SERVICES for o in SERVICES if r != o])
async def test_a_service_role_cannot_read_another_schema(migrated, reader, owner):
    conn = await asyncpg.connect(migrated[reader])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {owner}.outbox LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {owner}.intruder (x int)")
    finally:
        await conn.close()


async def test_a_service_role_cannot_use_the_public_schema(migrated):
    conn = await asyncpg.connect(migrated["intake"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.leak (x int)")
        assert await conn.fetchval("SELECT count(*) FROM outbox") >= 0  # its own schema is on its search path
    finally:
        await conn.close()


async def test_migrations_apply_once_in_order_and_refuse_drift(postgres, tmp_path):
    name, password = f"m_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    await db.provision(postgres.admin_dsn, "rapport", name, password)
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int PRIMARY KEY);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (id int REFERENCES a (id));")
    conn = await asyncpg.connect(role_dsn(postgres.admin_dsn, name, password))
    try:
        first = await db.migrate(conn, name, db.discover(tmp_path))
        shared = [m.version for m in db.discover(tmp_path / "none")]
        assert shared[0] == "shared/0000_messaging" and all(v.startswith("shared/") for v in shared)
        assert first == [*shared, "0001_a", "0002_b"]  # shared messaging first, then the service's, in order
        assert await db.migrate(conn, name, db.discover(tmp_path)) == []
        assert await db.pending_migrations(conn, db.discover(tmp_path)) == []

        (tmp_path / "0003_bad.sql").write_text("CREATE TABLE c (id int); SELECT 1/0;")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await db.migrate(conn, name, db.discover(tmp_path))
        assert await conn.fetchval("SELECT to_regclass('c')") is None  # the failed file left nothing
        assert await db.pending_migrations(conn, db.discover(tmp_path)) == ["0003_bad"]

        (tmp_path / "0003_bad.sql").unlink()
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id bigint PRIMARY KEY);")
        with pytest.raises(db.MigrationDrift):
            await db.migrate(conn, name, db.discover(tmp_path))
    finally:
        await conn.close()
