"""Contact details, erasure and the audit log against real Postgres; the contacts relay against
real Kafka (encrypted values on a compacted topic, tombstones on erasure)."""

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from rapport_shared.private_contacts import ContactRecordError, Keyring, data_keys_from_records, decode_record, topic_config
from rapport_testing.flows import intake_parts
from rapport_testing.kafka import read_all
from rapport_shared.topics import ERASURES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS
from rapport_intake.adapters.contacts_relay import ContactsRelay, producer_send
from rapport_shared.private_contacts import ensure_private_topic

pytestmark = pytest.mark.integration

CONTACT = {"name": "Ada Lovelace", "email": "ada.lovelace@example.org", "phone": "+44 7700 900461",
           "channel_consent": {"email": True, "sms": True}, "preferred_channel": "sms",
           "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Europe/London"}}


async def test_contact_details_are_recorded_read_by_clinicians_and_queued_for_the_private_topic(intake_it):
    h = intake_it
    episode, person = await h.open()
    r = await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT, role="partner")
    assert r.status_code == 200
    # The referral view never echoes contact details (whole values: "ada" alone occurs in random uuids).
    for secret in ("lovelace", "ada.lovelace@example.org", "7700900461", "7700 900461"):
        assert secret not in r.text.lower()
    got = (await h.call("GET", f"/v1/referrals/{episode}/contact")).json()["contact"]
    assert (got["email"], got["phone"], got["preferred_channel"]) == ("ada.lovelace@example.org", "+447700900461", "sms")
    assert (await h.call("GET", f"/v1/referrals/{episode}/contact", role="partner")).status_code == 403
    assert (await h.call("GET", f"/v1/referrals/{episode}/contact", role="clinician")).status_code == 403
    assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 1
    assert await h.outbox(episode) == []  # nothing on a shared topic for a contact change


async def test_contact_details_can_change_after_the_intake_ended(intake_it):
    h = intake_it
    episode, person = await h.open()
    await h.call("POST", f"/v1/referrals/{episode}/complete", intake_parts())
    r = await h.call("PUT", f"/v1/referrals/{episode}/contact", {**CONTACT, "email": "ada@new.example.org"})
    assert r.status_code == 200
    assert await h.pool.fetchval("SELECT email FROM contacts WHERE person_id = $1", person) == "ada@new.example.org"


async def test_erasure_removes_contact_details_and_free_text_and_queues_the_tombstone(intake_it):
    h = intake_it
    person = f"P-t{uuid.uuid4().hex[:8]}"
    first, _ = await h.open(person)
    second, _ = await h.open(person)
    await h.call("PUT", f"/v1/referrals/{first}/contact", CONTACT)
    body = intake_parts(phq9={1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1})
    body["inventory"] = {"people": [{"role": "mother", "label": "Mum (Irene)", "closeness": 1, "support": True,
                                     "conflict": False, "change_near_onset": True, "notes": "died in May"}],
                         "notes": "lives alone since"}
    body["focus"] = {"primary": "grief", "rationale": "onset after her mother Irene died"}
    body["risk_review"] = {"decision": "proceed", "note": "passive thoughts, sister Joan checks in daily"}
    assert (await h.call("POST", f"/v1/referrals/{first}/complete", body)).status_code == 200
    await h.pool.execute("DELETE FROM contact_publications WHERE person_id = $1", person)  # as if relayed

    assert (await h.call("POST", f"/v1/persons/{person}/erasure", role="intake_clinician")).status_code == 403
    r = await h.call("POST", f"/v1/persons/{person}/erasure", role="admin", sub="dpo-1")
    assert r.status_code == 200
    assert r.json() | {"erased_at": None} == {"person_id": person, "erased_at": None, "referrals": 2,
                                               "contact_erased": True, "tombstone": "queued"}

    assert await h.pool.fetchval("SELECT count(*) FROM contacts WHERE person_id = $1", person) == 0
    assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 1
    dump = await h.pool.fetchval(
        "SELECT string_agg(r::text, ' ') FROM (SELECT referrals::text AS r FROM referrals WHERE person_id = $1"
        " UNION ALL SELECT rr::text FROM risk_reviews rr JOIN referrals USING (episode_id) WHERE person_id = $1) x", person)
    for text in ("Irene", "died in May", "lives alone", "Joan", "Ada Lovelace", "lovelace", "7700900461", "7700 900461"):
        assert text not in dump
    view = (await h.call("GET", f"/v1/referrals/{first}")).json()
    assert view["focus"]["primary"] == "grief" and view["focus"]["rationale"] is None
    assert view["inventory"]["people"][0]["closeness"] == 1 and view["personal_text_erased_at"]
    assert await h.pool.fetchval("SELECT count(*) FROM erasures WHERE person_id = $1 AND erased_by = 'dpo-1'", person) == 1
    audit = (await h.call("GET", f"/v1/audit?person_id={person}&action=person.erased", role="admin")).json()["entries"]
    assert [(e["actor"], e["detail"]) for e in audit] == [("dpo-1", {"referrals": 2, "contact": True, "keys_destroyed": 0})]


async def test_erasing_an_unknown_person_is_404(intake_it):
    r = await intake_it.call("POST", "/v1/persons/P-nobody-here/erasure", role="admin")
    assert r.status_code == 404 and r.json()["field"] == "person_id"


async def test_the_audit_log_says_who_read_or_changed_which_referral_and_when(intake_it):
    h = intake_it
    episode, person = await h.open()
    await h.call("PUT", f"/v1/referrals/{episode}/consent", {"given": True, "method": "written"}, sub="ic-7")
    await h.call("GET", f"/v1/referrals/{episode}", role="clinician", sub="clin-9")
    await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT, sub="ic-7")
    await h.call("GET", f"/v1/referrals/{episode}/contact", role="admin", sub="admin-1")
    await h.call("PUT", f"/v1/referrals/{episode}/template", {"template_id": "ipt-unknown"})  # refused: not audited

    assert (await h.call("GET", f"/v1/audit?episode_id={episode}")).status_code == 403
    page = (await h.call("GET", f"/v1/audit?episode_id={episode}", role="admin", sub="admin-1")).json()
    trail = [(e["actor"], e["action"]) for e in page["entries"]]
    assert trail == [("ic-1", "referral.opened"), ("ic-7", "consent.recorded"), ("clin-9", "referral.read"),
                     ("ic-7", "contact.recorded"), ("admin-1", "contact.read")]
    assert all(e["episode_id"] == episode and e["person_id"] == person and e["at"] for e in page["entries"])
    assert "Ada" not in str(page)  # coded facts only: which fields changed, never their values
    assert page["entries"][3]["detail"]["fields"] == sorted(CONTACT)

    # The log is append-only, even for the service's own role.
    conn = await asyncpg.connect(h.dsn)
    try:
        for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_audit_pages(intake_it):
    h = intake_it
    episode, _ = await h.open()
    for _ in range(3):
        await h.call("GET", f"/v1/referrals/{episode}")
    page = (await h.call("GET", f"/v1/audit?episode_id={episode}&limit=2", role="admin")).json()
    assert len(page["entries"]) == 2 and page["next_after_seq"] == page["entries"][-1]["seq"]
    rest = (await h.call("GET", f"/v1/audit?episode_id={episode}&after_seq={page['next_after_seq']}", role="admin")).json()
    # ...and the first page's read of the trail is itself on the trail
    assert [e["action"] for e in rest["entries"]] == ["referral.read", "referral.read", "audit.read"]
    assert rest["next_after_seq"] is None


# ---- the contacts relay on real Kafka ----------------------------------------------------

async def test_the_relay_publishes_encrypted_contacts_and_tombstones_on_a_compacted_topic(intake_it, kafka):
    h = intake_it
    await ensure_private_topic(kafka.bootstrap, 3, 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        assert (await topic_config(admin, PRIVATE_CONTACTS))["cleanup.policy"] == "compact"
    finally:
        await admin.close()

    person = f"P-t{uuid.uuid4().hex[:8]}"
    episode, _ = await h.open(person)
    await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT)
    await h.call("PUT", f"/v1/referrals/{episode}/contact", {**CONTACT, "name": "Ada King"})  # two changes, one record

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    keyring = Keyring.development()
    try:
        relay = ContactsRelay(h.pool, producer_send(producer), keyring, "intake_it")
        assert await relay.drain() >= 2
        await h.call("POST", f"/v1/persons/{person}/erasure", role="admin")
        assert await relay.drain() >= 1
    finally:
        await producer.stop()
    assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 0

    mine = [r for r in await read_all(kafka.bootstrap, PRIVATE_CONTACTS) if r.key == person.encode()]
    assert len(mine) == 2
    live, tombstone = mine
    # Whole values: a short one ("Ada") may occur by chance in ciphertext.
    for secret in (b"Ada King", b"lovelace", b"7700900461"):
        assert secret not in live.value and secret not in repr(live.headers).encode()
    # contact.v2: encrypted with the person's data key, published wrapped on the keys topic
    keys = [r for r in await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS) if r.key == person.encode()]
    assert [r.value is None for r in keys] == [False, True]  # the key, then its tombstone (erasure)
    before_erasure = data_keys_from_records(keys[:1], keyring)
    contact = decode_record(live.key, live.value, live.headers, keyring, before_erasure)
    assert (contact.name, contact.email, contact.phone) == ("Ada King", "ada.lovelace@example.org", "+447700900461")
    assert tombstone.value is None and decode_record(tombstone.key, tombstone.value, tombstone.headers, keyring) is None
    # crypto-shredding: the keys topic as it reads after the erasure holds no key for the person,
    # and intake's row has no key material left
    with pytest.raises(ContactRecordError):
        decode_record(live.key, live.value, live.headers, keyring, data_keys_from_records(keys, keyring))
    row = await h.pool.fetchrow("SELECT * FROM person_keys WHERE person_id = $1", person)
    assert row["wrapped_key"] is None and row["destroyed_at"] is not None
    notices = [r for r in await read_all(kafka.bootstrap, ERASURES) if r.key == person.encode()]
    assert len(notices) == 1 and b"Ada" not in notices[0].value


async def test_a_relay_failure_after_publishing_republishes_the_same_state(intake_it, kafka):
    """At least once: if the relay dies between the broker's ack and deleting its queue rows,
    the next pass publishes the person's current state again (a compacted topic absorbs it)."""
    h = intake_it
    await ensure_private_topic(kafka.bootstrap, 3, 1)
    person = f"P-t{uuid.uuid4().hex[:8]}"
    episode, _ = await h.open(person)
    await h.call("PUT", f"/v1/referrals/{episode}/contact", CONTACT)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    send = producer_send(producer)

    async def send_then_die(record):
        ack = await send(record)

        async def acked_then_crash():
            await ack  # the broker has the record...
            raise ConnectionError("relay died before deleting its queue rows")  # ...but the rows stay

        return acked_then_crash()

    try:
        with pytest.raises(ConnectionError):
            await ContactsRelay(h.pool, send_then_die, Keyring.development(), "intake_it").drain()
        assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 1
        await ContactsRelay(h.pool, send, Keyring.development(), "intake_it").drain()
    finally:
        await producer.stop()
    assert await h.pool.fetchval("SELECT count(*) FROM contact_publications WHERE person_id = $1", person) == 0
    mine = [r for r in await read_all(kafka.bootstrap, PRIVATE_CONTACTS) if r.key == person.encode()]
    keys = data_keys_from_records(await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS), Keyring.development())
    decoded = [decode_record(r.key, r.value, r.headers, Keyring.development(), keys) for r in mine]
    assert len(mine) == 2 and decoded[0] == decoded[1] and decoded[0].email == CONTACT["email"]
