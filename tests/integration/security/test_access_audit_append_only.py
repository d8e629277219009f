"""The access audit is append-only for the service's own role (issue #10): each service's role
may INSERT and SELECT its audit rows and nothing else — not UPDATE, DELETE, TRUNCATE, ALTER or
DROP — because the table sits in a schema the provisioning role owns, not the service."""

import asyncpg
import pytest

from rapport_testing.services import SERVICES

pytestmark = pytest.mark.integration

INSERT = ("INSERT INTO {s}_audit.access_audit (at, actor, actor_roles, actor_org, method, route, record_param,"
          " record_id, record_org, decision, status) VALUES (now(), 'clin-1', '{{clinician}}', 'org-test', 'GET',"
          " '/v1/x/{{episode_id}}', 'episode_id', 'e-1', 'org-test', 'allowed', 200) RETURNING seq")


@pytest.mark.parametrize("service", SERVICES)
async def test_the_service_role_can_append_and_read_but_never_change_its_audit(service_dsns, service):
    conn = await asyncpg.connect(service_dsns[service])
    try:
        seq = await conn.fetchval(INSERT.format(s=service))
        assert await conn.fetchval(f"SELECT actor FROM {service}_audit.access_audit WHERE seq = $1", seq) == "clin-1"
        for statement in (
            f"UPDATE {service}_audit.access_audit SET actor = 'someone-else' WHERE seq = {seq}",
            f"DELETE FROM {service}_audit.access_audit WHERE seq = {seq}",
            f"TRUNCATE {service}_audit.access_audit",
            f"ALTER TABLE {service}_audit.access_audit DROP COLUMN actor",
            f"DROP TABLE {service}_audit.access_audit",
            f"DROP SCHEMA {service}_audit CASCADE",
            f"CREATE TABLE {service}_audit.shadow (x int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        assert await conn.fetchval(f"SELECT actor FROM {service}_audit.access_audit WHERE seq = $1", seq) == "clin-1"
    finally:
        await conn.close()


async def test_another_service_cannot_even_read_it(service_dsns):
    conn = await asyncpg.connect(service_dsns["notifier"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM intake_audit.access_audit LIMIT 1")
    finally:
        await conn.close()
