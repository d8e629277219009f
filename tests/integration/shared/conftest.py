import asyncio
import secrets
import uuid

import pytest

from rapport_shared import db
from rapport_shared.testing.services import role_dsn


@pytest.fixture(scope="session")
def scratch_schema(postgres):
    """A throwaway schema + role (as provisioned for a service) with the messaging tables."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)

    async def go():
        await db.provision(postgres.admin_dsn, "rapport", name, password)
        dsn = role_dsn(postgres.admin_dsn, name, password)
        conn = await __import__("asyncpg").connect(dsn)
        try:
            await db.migrate(conn, name, db.discover(__import__("pathlib").Path("/nonexistent")))
        finally:
            await conn.close()
        return dsn

    return name, asyncio.run(go())
