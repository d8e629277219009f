import asyncio

import pytest

from rapport_testing.fixtures import scratch_schema as make_scratch_schema


@pytest.fixture(scope="session")
def scratch_schema(postgres):
    """A throwaway schema + role (as provisioned for a service) with the messaging tables."""
    return asyncio.run(make_scratch_schema(postgres.admin_dsn, "t"))
