"""pytest plugin with the project's shared fixtures (``pytest_plugins`` in tests/conftest.py).

Session-scoped: one Kafka and one Postgres (Testcontainers, from the images built by
``deploy/build-images.sh``; or already-running ones named by ``RAPPORT_TEST_KAFKA_BOOTSTRAP`` /
``RAPPORT_TEST_POSTGRES_DSN``), the four schemas and roles provisioned and migrated, and the four
services as separate processes for end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path

import asyncpg
import pytest

from rapport_shared import db
from rapport_shared.http.auth import TokenAuthority, TokenIssuer
from .services import SERVICES, System, build_system, role_dsn

TEST_SECRET = "test-secret-" + secrets.token_hex(16)
# The organisation every test token acts for unless it names another (``org=``), and a second
# one for "another organisation" cases. Pseudonymous codes, as in production.
TEST_ORG = "org-test"
OTHER_ORG = "org-other"
# The e2e system's token issuer: ES256, its public key in a JWKS file the services verify with.
TEST_ISSUER = TokenIssuer.generate("test-key-1", org=TEST_ORG)


@pytest.fixture(scope="session")
def postgres():
    from . import infra  # imported late: unit tests need no Docker

    handle = infra.start_postgres()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def kafka():
    from . import infra

    handle = infra.start_kafka()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def db_passwords(postgres) -> dict[str, str]:
    """Each service's role and schema, created as an operator would (rapport-admin provision)."""
    passwords = {name: secrets.token_urlsafe(12) for name in SERVICES}

    async def go() -> None:
        for name in SERVICES:
            await db.provision(postgres.admin_dsn, "rapport", name, passwords[name])

    asyncio.run(go())
    return passwords


@pytest.fixture(scope="session")
def service_dsns(postgres, db_passwords) -> dict[str, str]:
    return {name: role_dsn(postgres.admin_dsn, name, db_passwords[name]) for name in SERVICES}


@pytest.fixture(scope="session")
def tokens() -> TokenIssuer:
    """The e2e system's issuer (ES256; the services hold only its public JWKS). Org TEST_ORG."""
    return TEST_ISSUER


@pytest.fixture(scope="session")
def hmac_tokens() -> TokenAuthority:
    """For in-process harnesses configured with ``auth_secret=TEST_SECRET``. Org TEST_ORG."""
    return TokenAuthority(TEST_SECRET, org=TEST_ORG)


@pytest.fixture(scope="session")
def system(postgres, kafka, db_passwords, tmp_path_factory) -> System:
    """The four services as separate processes (each migrates its own schema on start)."""
    jwks = Path(tmp_path_factory.mktemp("jwks")) / "jwks.json"
    jwks.write_text(json.dumps(TEST_ISSUER.jwks()))
    sys_ = build_system(admin_dsn=postgres.admin_dsn, kafka_bootstrap=kafka.bootstrap, passwords=db_passwords,
                        jwks=str(jwks), log_dir=Path(tmp_path_factory.mktemp("service-logs")))
    sys_.start_all()
    yield sys_
    sys_.stop_all()


@pytest.fixture
async def admin_conn(postgres):
    conn = await asyncpg.connect(postgres.admin_dsn)
    yield conn
    await conn.close()


async def scratch_schema(admin_dsn: str, prefix: str, migrations_dir: Path | None = None) -> tuple[str, str]:
    """A throwaway schema and role, provisioned as ``rapport-admin provision`` would and migrated
    with the shared messaging tables (+ a service's migrations). Returns (schema name, role DSN)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    await db.provision(admin_dsn, "rapport", name, password)
    dsn = role_dsn(admin_dsn, name, password)
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn, name, db.discover(migrations_dir or Path("/nonexistent")))
    finally:
        await conn.close()
    return name, dsn
