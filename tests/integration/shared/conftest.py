import asyncio

import asyncpg

import pytest

from rapport_testing.fixtures import scratch_schema as make_scratch_schema


@pytest.fixture(scope="session")
def scratch_schema(postgres):
    """A throwaway schema + role (as provisioned for a service) with the messaging tables."""
    return asyncio.run(make_scratch_schema(postgres.admin_dsn, "t"))


@pytest.fixture
async def scratch_pool(scratch_schema):
    """A pool on the scratch schema (its search_path), closed after the test; a module's ``pool``
    fixture adds its own tables or clean-up."""
    name, dsn = scratch_schema
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=12, server_settings={"search_path": name})
    yield pool
    await pool.close()
