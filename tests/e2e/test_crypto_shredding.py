"""Issue 17, item 3 end to end: erasure by crypto-shredding (docs/privacy.md).

Two persons go through intake with contact details; each gets a safety alert that a clinician
resolves with free text. The private topics are dumped (as a backup or a stolen copy would be).
One person is erased. Then, with the dumped contact records and the master keyring:

* the erased person's dumped contact record can no longer be decrypted — the only way to its data
  key is ``rapport.private.person-keys``, where the key is now a tombstone (what compaction keeps);
* the other person's dumped record still decrypts;
* outcomes has erased the free text of the erased person's resolved alert (the coded action
  stays), and kept the other person's.

The documented limit is asserted too: a dump of *both* private topics taken before the erasure,
plus the master key, still decrypts (rotating the master key and dropping the old one closes it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import httpx
import pytest

from rapport_shared.private_contacts import (ContactRecordError, Keyring, data_keys_from_records, decode_erasure,
                                             decode_record)
from rapport_testing.flows import phq9, run_intake_steps
from rapport_testing.kafka import read_all, wait_for_records
from rapport_shared.topics import COURSE, ERASURES, OUTCOMES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

pytestmark = pytest.mark.e2e

MASTER = Keyring.development()  # the e2e system's master keyring (RAPPORT_CONTACTS_KEYS default)


def of(episode: str, ce_type: str):
    return lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == ce_type


def compacted(records):
    """What compaction leaves of a compacted topic: the latest record per key (tombstones last)."""
    latest = {}
    for r in records:
        latest[r.key] = r
    return list(latest.values())


async def _person_with_resolved_alert(system, kafka, tokens, http: httpx.Client, tag: str) -> dict:
    person = f"P-t{uuid.uuid4().hex[:12]}"
    clinician_id = f"clin-t{uuid.uuid4().hex[:8]}"
    email, phone = f"shred.{tag}.{uuid.uuid4().hex[:6]}@example.org", f"+4477009{uuid.uuid4().int % 10**5:05d}"
    done = run_intake_steps(system["intake"].url, tokens.issue("ic-shred", ["intake_clinician"]), person_id=person,
                            clinician_id=clinician_id,
                            contact={"name": f"Shred {tag}", "email": email, "phone": phone,
                                     "channel_consent": {"email": True, "sms": True}, "preferred_channel": "email"})
    episode = done["episode_id"]
    await wait_for_records(kafka.bootstrap, COURSE, of(episode, "rapport.course.planned.v1"), timeout=120)
    app = {"Authorization": f"Bearer {tokens.issue(person, ['patient_app'])}"}
    r = http.post(f"{system['outcomes'].url}/v1/episodes/{episode}/submissions", headers=app, json={
        "client_submission_id": f"app-{uuid.uuid4().hex}", "instrument": "phq9", "answers": phq9(14, 1),
        "administered_at": datetime.now(timezone.utc).isoformat(), "session_number": 1})
    assert r.status_code == 201, r.text
    [alert_id] = r.json()["alert_ids"]
    action_text = f"called {tag}'s sister at home; safety plan agreed ({uuid.uuid4().hex[:6]})"
    clinician = {"Authorization": f"Bearer {tokens.issue(clinician_id, ['clinician'])}"}
    r = http.post(f"{system['outcomes'].url}/v1/alerts/{alert_id}/resolve", headers=clinician,
                  json={"action": "other", "action_text": action_text})
    assert r.status_code == 200, r.text
    assert r.json()["resolution"]["action_text"] == action_text
    return {"person": person, "episode": episode, "alert_id": alert_id, "email": email, "phone": phone,
            "action_text": action_text, "clinician": clinician}


def _alert(system, http: httpx.Client, p: dict) -> dict:
    r = http.get(f"{system['outcomes'].url}/v1/alerts/{p['alert_id']}", headers=p["clinician"])
    assert r.status_code == 200, r.text
    return r.json()


async def test_erasure_shreds_dumped_contacts_and_erases_alert_free_text(system, kafka, tokens):
    http = httpx.Client(timeout=30)
    erased, kept = [await _person_with_resolved_alert(system, kafka, tokens, http, tag) for tag in ("erased", "kept")]

    # 1. Dump the private topics while both persons are live (a backup, or a stolen copy).
    for p in (erased, kept):
        await wait_for_records(kafka.bootstrap, PRIVATE_CONTACTS, lambda r, p=p: r.key == p["person"].encode())
        await wait_for_records(kafka.bootstrap, PRIVATE_PERSON_KEYS, lambda r, p=p: r.key == p["person"].encode())
    contacts_dump = await read_all(kafka.bootstrap, PRIVATE_CONTACTS)
    keys_dump = await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS)

    def dumped(p):
        [*_, last] = [r for r in contacts_dump if r.key == p["person"].encode()]
        assert last.value is not None and last.headers["rapport_record"] == "contact.v2"
        for secret in (p["email"], p["phone"]):  # the dump itself holds only ciphertext ...
            assert secret.encode() not in last.value
        return last

    erased_record, kept_record = dumped(erased), dumped(kept)
    # ... and the master key alone does not open a contact.v2 record: it needs the person's data key
    with pytest.raises(ContactRecordError):
        decode_record(erased_record.key, erased_record.value, erased_record.headers, MASTER)

    # 2. An admin of the organisation erases one person.
    admin = {"Authorization": f"Bearer {tokens.issue('dpo-shred', ['admin'])}"}
    r = http.post(f"{system['intake'].url}/v1/persons/{erased['person']}/erasure", headers=admin)
    assert r.status_code == 200 and r.json()["contact_erased"] is True, r.text
    await wait_for_records(kafka.bootstrap, PRIVATE_PERSON_KEYS,
                           lambda r: r.key == erased["person"].encode() and r.value is None)
    [notice] = await wait_for_records(kafka.bootstrap, ERASURES, lambda r: r.key == erased["person"].encode())
    n = decode_erasure(notice.key, notice.value, notice.headers)
    assert (n.person_id, n.organisation_id) == (erased["person"], "org-test")  # nothing else travels

    # 3. The dumped contact records against the key topic as it stands after the erasure (and
    #    as compaction leaves it): the erased person's key is gone, the other's is there.
    keys_now = await read_all(kafka.bootstrap, PRIVATE_PERSON_KEYS)
    for view in (keys_now, compacted(keys_now)):
        data_keys = data_keys_from_records(view, MASTER)
        with pytest.raises(ContactRecordError):
            decode_record(erased_record.key, erased_record.value, erased_record.headers, MASTER, data_keys)
        still = decode_record(kept_record.key, kept_record.value, kept_record.headers, MASTER, data_keys)
        assert (still.email, still.phone) == (kept["email"], kept["phone"])
    assert [r.value for r in compacted(keys_now) if r.key == erased["person"].encode()] == [None]

    # The documented limit (docs/privacy.md): dumps of BOTH topics taken before the erasure, plus
    # the master key, still open the record; only dropping that master key (after a rotation) closes it.
    before = decode_record(erased_record.key, erased_record.value, erased_record.headers, MASTER,
                           data_keys_from_records(keys_dump, MASTER))
    assert before.email == erased["email"]
    with pytest.raises(ContactRecordError):  # without the (dropped) master key, not even those dumps help
        decode_record(erased_record.key, erased_record.value, erased_record.headers, MASTER,
                      data_keys_from_records(keys_dump, Keyring.from_config('{"dev-1": "' + "A" * 43 + '="}', "dev-1")))

    # 4. Outcomes erased the erased person's alert free text; the coded action stays; the other's is kept.
    deadline = time.monotonic() + 60
    while (a := _alert(system, http, erased))["resolution"]["action_text"] is not None:
        assert time.monotonic() < deadline, "outcomes did not erase the alert's free text"
        await asyncio.sleep(0.5)
    assert a["status"] == "resolved" and a["resolution"]["action"] == "other"
    resolved = [e for e in a["audit"] if e["action"] == "resolved"]
    assert resolved and all(e["details"]["action_text"] is None for e in resolved)
    assert erased["action_text"] not in str(a)
    other = _alert(system, http, kept)
    assert other["resolution"]["action_text"] == kept["action_text"]
    # the resolution event on the shared topic never carried the text in the first place
    for rec in await read_all(kafka.bootstrap, OUTCOMES):
        assert erased["action_text"].encode() not in (rec.value or b"")
