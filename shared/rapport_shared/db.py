"""Postgres: pools bound to the service's schema, SQL migrations, per-service roles.

Each service owns one schema and connects as its own role that can reach only that schema
(architecture.md). ``provision`` creates the roles and schemas with an admin DSN; everything
else runs as the service role.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .logging import get_logger

log = get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ident(name: str) -> str:
    """Quote-free identifier after validation: schema and role names come from settings."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


async def create_pool(dsn: str, schema: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": ident(schema), "application_name": f"rapport-{schema}"},
    )


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(service_dir: Path) -> list[Migration]:
    """Shared messaging migrations first, then the service's own, each in file-name order."""
    found = [Migration(f"shared/{p.stem}", p) for p in sorted(SHARED_MIGRATIONS.glob("*.sql"))]
    found += [Migration(p.stem, p) for p in sorted(service_dir.glob("*.sql"))]
    return found


class MigrationDrift(RuntimeError):
    pass


async def migrate(conn: asyncpg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply pending migrations in order, one transaction each. Returns the versions applied.

    An advisory lock serialises concurrent migrators (several replicas starting at once);
    a changed checksum of an applied migration stops everything (never edit an applied file).
    """
    schema = ident(schema)
    await conn.execute(f"SET search_path = {schema}")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"{schema}.migrations")
    try:
        applied = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        for m in migrations:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationDrift(f"migration {m.version} was changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", m.version, m.checksum)
            applied_now.append(m.version)
            log.info("migration applied", schema=schema, version=m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"{schema}.migrations")
    return applied_now


async def pending_migrations(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return [m.version for m in migrations]
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.version for m in migrations if m.version not in applied]


async def provision(admin_dsn: str, database: str, service: str, password: str) -> None:
    """Create (or update) the role ``rapport_<service>`` and the schema ``<service>`` it owns.

    Idempotent. The role gets CONNECT on the database and nothing on any other schema;
    PUBLIC loses its default rights on the database and the public schema.
    """
    role, schema, db = ident(f"rapport_{service}"), ident(service), ident(database)
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            # Serialise concurrent provisioners (CREATE ROLE has no IF NOT EXISTS).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('rapport.provision'))")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # Passwords cannot be bound parameters in DDL; quote them as literals.
            lit = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {lit}")
            await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}")
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
            await conn.execute(f"ALTER ROLE {role} SET search_path = {schema}")
            await _provision_audit(conn, schema, role)
    finally:
        await conn.close()


def audit_schema(schema: str) -> str:
    return ident(f"{schema}_audit")


async def _provision_audit(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """The access audit (http/access.py) in a schema the service role does not own: it may
    INSERT and SELECT, never UPDATE, DELETE, TRUNCATE, ALTER or DROP (an owner of the schema the
    table sat in could drop it, so it sits in one owned by the provisioning role)."""
    audit = audit_schema(schema)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {audit}")
    await conn.execute(f"REVOKE ALL ON SCHEMA {audit} FROM PUBLIC")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {audit}.access_audit ("
        " seq bigserial PRIMARY KEY, at timestamptz NOT NULL, actor text, actor_roles text[] NOT NULL,"
        " actor_org text, method text NOT NULL, route text NOT NULL, record_param text, record_id text,"
        " record_org text, decision text NOT NULL CHECK (decision IN ('allowed', 'refused', 'not_found')),"
        " status integer NOT NULL, logged_at timestamptz NOT NULL DEFAULT now())")
    await conn.execute(f"CREATE INDEX IF NOT EXISTS access_audit_record ON {audit}.access_audit (record_id, seq)")
    await conn.execute(f"REVOKE ALL ON {audit}.access_audit FROM {role}")
    await conn.execute(f"GRANT USAGE ON SCHEMA {audit} TO {role}")
    await conn.execute(f"GRANT SELECT, INSERT ON {audit}.access_audit TO {role}")
    await conn.execute(f"GRANT USAGE ON SEQUENCE {audit}.access_audit_seq_seq TO {role}")


async def ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(f"CREATE DATABASE {ident(database)}")
    finally:
        await conn.close()
