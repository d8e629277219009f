"""Personal data entered at intake never reaches a shared topic; it reaches the private,
compacted contacts topic only encrypted; an admin erasure publishes its tombstone."""

import uuid

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from rapport_shared.faults import EXIT_CODE
from rapport_shared.private_contacts import ContactRecordError, Keyring, data_keys_from_records, decode_record, topic_config
from rapport_testing.flows import PHQ9_BASELINE, intake_parts, open_referral
from rapport_testing.kafka import read_all, wait_caught_up, wait_for_records
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS, SHARED_TOPICS

from intake_e2e_helpers import headers

pytestmark = pytest.mark.e2e


async def all_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


async def test_no_shared_topic_ever_carries_personal_data_entered_at_intake(system, kafka, tokens, api, plain):
    tag = uuid.uuid4().hex[:8]
    name, email = f"Quillon {tag.upper()} Featherstonehaugh", f"quillon.{tag}@example.org"
    digits = str(int(tag, 16) % 10**6).zfill(6)
    phone_typed, phone = f"+44 7700 9{digits[:2]} {digits[2:]}", f"+4477009{digits}"
    rationale, label, note = f"rationale-{tag}: lost her job at the bakery", f"Auntie {tag}", f"note-{tag}: sister visits"
    person = f"P-t{tag}"

    episode = open_referral(system["intake"].url, tokens.issue("ic-e2e", ["intake_clinician"]), person_id=person)
    body = intake_parts(phq9={**PHQ9_BASELINE, 9: 1})
    body["contact"] = {"name": name, "email": email, "phone": phone_typed,
                       "channel_consent": {"email": True, "sms": True}, "preferred_channel": "email"}
    body["focus"] = {**body["focus"], "rationale": rationale}
    body["inventory"] = {"people": [{"role": "aunt", "label": label, "closeness": 2, "support": True,
                                     "conflict": False, "change_near_onset": False, "notes": note}], "notes": note}
    body["risk_review"] = {"decision": "proceed", "note": note}
    done = api.call("POST", f"/v1/referrals/{episode}/complete", body)
    assert done.status_code == 200, done.text

    # Let the episode run through every service, then erase the person.
    await plain.first(NOTIFICATIONS, lambda m: m.key == episode.encode())
    erased = api.call("POST", f"/v1/persons/{person}/erasure", role="admin", sub="dpo-e2e")
    assert erased.status_code == 200 and erased.json()["contact_erased"] is True
    tombstone = await plain.first(PRIVATE_CONTACTS, lambda m: m.key == person.encode() and m.value is None)
    assert headers(tombstone)["rapport_erased"] == "true"
    for group, topic in (("rapport-scheduler", INTAKE), ("rapport-outcomes", INTAKE), ("rapport-notifier", COURSE)):
        await wait_caught_up(kafka.bootstrap, group, topic)

    secrets = [name, *name.split(), email, email.split("@")[0], phone, phone[1:], phone_typed, digits, rationale,
               label, note, tag.upper()]
    private = (PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS)  # encrypted / wrapped keys: checked below
    topics = [t for t in await all_topics(kafka.bootstrap) if not t.startswith("__") and t not in private]
    assert set(SHARED_TOPICS) <= set(topics)
    scanned = 0
    for topic in topics:  # every shared topic, dead-letter topics included
        for r in await read_all(kafka.bootstrap, topic):
            blob = b" ".join([r.key or b"", r.value or b"", *[f"{k}={v}".encode() for k, v in r.headers.items()]])
            for secret in secrets:
                assert secret.encode() not in blob, f"{secret!r} found on {topic} at offset {r.offset}"
            scanned += 1
    assert scanned > 0
    assert [r for r in await read_all(kafka.bootstrap, INTAKE) if r.key == episode.encode()]  # the scan saw the episode

    # The private topic: compacted, values encrypted, readable with the key, then the tombstone.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        assert (await topic_config(admin, PRIVATE_CONTACTS))["cleanup.policy"] == "compact"
    finally:
        await admin.close()
    mine = [r for r in await read_all(kafka.bootstrap, PRIVATE_CONTACTS) if r.key == person.encode()]
    assert mine[-1].value is None
    live = [r for r in mine if r.value is not None]
    assert live, "the contact was published before it was erased"
    # the person's data key: its earlier (not yet compacted) values, then the tombstone
    keys = [r for r in await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS) if r.key == person.encode()]
    assert keys[-1].value is None and keys[-1].headers["rapport_erased"] == "true"
    before = data_keys_from_records([r for r in keys if r.value is not None], Keyring.development())
    after = data_keys_from_records(keys, Keyring.development())
    for r in live:
        for secret in (name, email, phone, tag.upper()):
            assert secret.encode() not in r.value
        contact = decode_record(r.key, r.value, r.headers, Keyring.development(), before)
        assert (contact.name, contact.email, contact.phone) == (name, email, phone)
        with pytest.raises(ContactRecordError):  # crypto-shredded (docs/privacy.md)
            decode_record(r.key, r.value, r.headers, Keyring.development(), after)

    # The referral keeps its coded facts; its free text is gone; the erasure is audited.
    view = api.call("GET", f"/v1/referrals/{episode}").json()
    assert view["status"] == "completed" and view["focus"]["rationale"] is None
    assert api.call("GET", f"/v1/referrals/{episode}/contact").json()["contact"] is None
    trail = api.call("GET", f"/v1/audit?person_id={person}&action=person.erased", role="admin").json()["entries"]
    assert [e["actor"] for e in trail] == ["dpo-e2e"]


async def test_the_contacts_relay_dying_after_publishing_loses_nothing(system, kafka, tokens, api):
    """Crash point ``contacts_relay.after_publish``: the record is on Kafka, the queue row is not
    deleted; after the restart the same current state is published again."""
    person = f"P-t{uuid.uuid4().hex[:10]}"
    episode = open_referral(system["intake"].url, tokens.issue("ic-e2e", ["intake_clinician"]), person_id=person)
    system.restart("intake", {"RAPPORT_CRASH_AT": "contacts_relay.after_publish"})
    try:
        try:  # the relay may kill the process before the answer is written; the commit happened either way
            api.call("PUT", f"/v1/referrals/{episode}/contact", {"email": "crash@example.org", "channel_consent": {"email": True}})
        except httpx.TransportError:
            pass
        assert system["intake"].wait_exit(60) == EXIT_CODE
    finally:
        system.restart("intake")
    copies = await wait_for_records(kafka.bootstrap, PRIVATE_CONTACTS, lambda r: r.key == person.encode(), count=2)
    keys = data_keys_from_records(await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS), Keyring.development())
    decoded = [decode_record(r.key, r.value, r.headers, Keyring.development(), keys) for r in copies]
    assert decoded[0] == decoded[1] and decoded[0].email == "crash@example.org"
