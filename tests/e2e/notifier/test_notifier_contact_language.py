"""The patient's language travels on the private contacts record: intake's contact endpoint takes
an optional language code, intake publishes it encrypted, the notifier uses it."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from rapport_testing.notifier import until
from rapport_testing.flows import open_referral

pytestmark = pytest.mark.e2e


async def test_language_from_intake_reaches_the_notifier(system, tokens, service_dsns):
    token = tokens.issue("ic-lang", ["intake_clinician"])
    person = f"P-lang-{uuid.uuid4().hex[:8]}"
    episode = open_referral(system["intake"].url, token, person_id=person)
    url = f"{system['intake'].url}/v1/referrals/{episode}/contact"
    auth = {"Authorization": f"Bearer {token}"}
    contact = {"email": "lang@patients.test", "channel_consent": {"email": True}}
    r = httpx.put(url, headers=auth, json={**contact, "language": "english"}, timeout=30)
    assert r.status_code == 422 and "language" in r.text
    r = httpx.put(url, headers=auth, json={**contact, "language": "ES"}, timeout=30)
    assert r.status_code == 200, r.text

    async def language():
        conn = await asyncpg.connect(service_dsns["notifier"])
        try:
            return await conn.fetchval("SELECT language FROM patients WHERE person_id = $1", person)
        finally:
            await conn.close()

    assert await until(language, what="the contact with its language at the notifier") == "es"
    # and without a language the record says so (the notifier's default applies)
    assert httpx.put(url, headers=auth, json=contact, timeout=30).status_code == 200
    await until(lambda: _none(language()), what="language cleared")


async def _none(coro) -> bool:
    return (await coro) is None
