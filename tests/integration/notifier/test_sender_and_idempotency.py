"""The notifier's delivery machinery on a real Postgres (docs/notifier.md, "Exactly once, and its
limit" and "Replay safety"): one row per idempotency key; claim → send → record; retries with
exponential backoff after a channel failure; failed after the bounded time; in-doubt resends
with the same key; replay mode; projections that a re-processed event cannot rewind."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from rapport_notifier.adapters.channels import SendError
from rapport_notifier.adapters.contacts import apply_record
from rapport_notifier.domain import rules
from rapport_notifier.service_layer import handlers
from rapport_shared.contracts.course import (CoursePlannedV1, PhaseSpan, PlannedSession, SessionAttendedV1,
                                             SessionRescheduledV1)
from rapport_shared.contracts.outcomes import AlertRaisedV1
from rapport_shared.private_contacts import ContactRecordV1, Keyring, encode_contact

pytestmark = pytest.mark.integration


async def clinician(h, cid: str, channels=("email",)) -> None:
    await h.exec("INSERT INTO clinicians (clinician_id, email, phone, language, channels, updated_at)"
                 " VALUES ($1, $2, '+447700900001', 'en', $3, now())", cid, f"{cid}@clinic.test", list(channels))


async def patient(h, pid: str, language: str | None = None) -> None:
    await h.exec("INSERT INTO patients (person_id, email, channel_consent, updated_at, language)"
                 " VALUES ($1, $2, '{\"email\": true}', now(), $3)", pid, f"{pid}@patients.test", language)


async def enqueue(h, **kw) -> int:
    async with h.uow() as uow:
        return await handlers.enqueue(uow, **kw)


async def notice(h, cause=None, ep=None, to="clinician:c1") -> uuid.UUID:
    cause = cause or uuid.uuid4()
    await enqueue(h, kind=rules.REVIEW_NOTICE, cause_event_id=cause, episode_id=ep or uuid.uuid4(), recipient_ref=to,
                  params={"episode_id": "e", "reason": "r", "session_number": 1})
    return cause


# ---------------------------------------------------------------- one row per key
async def test_one_delivery_row_per_idempotency_key(h):
    await clinician(h, "c1", ("email", "sms"))
    cause, ep = uuid.uuid4(), uuid.uuid4()
    counts = [await enqueue(h, kind=rules.SAFETY_ALERT, cause_event_id=cause, episode_id=ep, recipient_ref="clinician:c1",
                            params={}) for _ in range(3)]
    assert counts == [2, 0, 0]  # every channel of the clinician, once
    rows = await h.fetch("SELECT * FROM notifications ORDER BY channel")
    assert [r["channel"] for r in rows] == ["email", "sms"]
    for r in rows:
        assert r["idem_key"] == rules.idem_key(cause, "clinician:c1", r["channel"], rules.SAFETY_ALERT)
        assert r["notification_id"] == rules.notification_id(r["idem_key"])
    # The same event processed again (inbox bypassed, as in a replay into a fresh inbox): nothing new.
    await patient(h, "P-1")
    t = h.clock.now()
    planned = CoursePlannedV1(
        episode_id=ep, course_id=uuid.uuid4(), person_id="P-1", template_id="ipt_depression_16", clinician_id="c1",
        contracted_sessions=2, phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=2)],
        sessions=[PlannedSession(session_id=uuid.uuid4(), number=n, starts_at=t + timedelta(days=n), duration_minutes=50)
                  for n in (1, 2)], first_session_at=t + timedelta(days=1), planned_end_at=t + timedelta(days=2), planned_at=t)
    event = await h.handle(planned)
    await h.fire_due()
    snapshot = [await h.val(f"SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {table} x")
                for table in ("notifications", "sessions", "questionnaire_requests")]
    pending = await h.val("SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL")
    await h.handle(planned, event_id=event.id, at=event.time)
    await h.fire_due()
    assert snapshot == [await h.val(f"SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {table} x")
                        for table in ("notifications", "sessions", "questionnaire_requests")]
    assert pending == await h.val("SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL")


# ---------------------------------------------------------------- sender: retries, bounded time
async def test_a_channel_failure_is_retried_with_exponential_backoff_and_the_same_key(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.script = [SendError("smtp_unreachable", "down"), SendError("smtp_error", "451"), None]
    sender = h.sender()
    delays = []
    for attempt in (1, 2):
        [row] = await sender.claim()
        assert row["status"] == "sending" and row["attempts"] == attempt
        before = await h.val("SELECT clock_timestamp()")
        await sender.deliver(row)
        after = await h.val("SELECT clock_timestamp()")
        r = await h.row("SELECT * FROM notifications")
        assert r["status"] == "ready" and r["attempts"] == attempt and r["lease_until"] is None
        delay = timedelta(seconds=30 * 2 ** (attempt - 1))  # RETRY_BASE_S · 2ⁿ
        assert before + delay <= r["next_attempt_at"] <= after + delay
        delays.append(delay)
        assert await sender.claim() == []  # not due before its backoff
        await h.exec("UPDATE notifications SET next_attempt_at = now()")  # the backoff has passed
    [row] = await sender.claim()
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "delivered" and r["attempts"] == 3 and r["in_doubt"] == 0
    assert {(m.idem_key, m.notification_id) for m in h.email.sent} == {(r["idem_key"], str(r["notification_id"]))}
    assert len(h.email.sent) == 3
    [ev] = await h.outbox_events("rapport.notification.delivered.v1")
    assert ev["id"] == str(uuid.uuid5(r["notification_id"], "delivered")) and ev["channel"] == "email"
    assert "@" not in json.dumps(ev)  # by reference only


async def test_backoff_is_capped(make_harness):
    h = make_harness(retry_base_s=30)
    await clinician(h, "c1")
    await notice(h)
    h.email.script = [SendError("smtp_unreachable", "down")] * 10
    sender = h.sender()
    await h.exec("UPDATE notifications SET attempts = 5")  # the 6th attempt: 30·2⁵ = 960 s > RETRY_MAX_S (100)
    [row] = await sender.claim()
    before = await h.val("SELECT clock_timestamp()")
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "ready" and before + timedelta(seconds=100) <= r["next_attempt_at"] <= before + timedelta(seconds=101)


async def test_failed_for_good_after_the_bounded_time(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.script = [SendError("smtp_unreachable", "down")] * 2
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    assert (await h.row("SELECT status FROM notifications"))["status"] == "ready"
    # RETRY_FOR_S (3600 s) of wall time since the first attempt has gone by
    await h.exec("UPDATE notifications SET first_attempt_at = now() - interval '3601 seconds', next_attempt_at = now()")
    [row] = await sender.claim()
    failed = {"channel": "email", "kind": row["kind"], "outcome": "failed"}
    before = REGISTRY.get_sample_value("rapport_notifier_deliveries_total", failed) or 0.0
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "failed" and r["attempts"] == 2 and r["last_error"].startswith("smtp_unreachable")
    # counted once, for the RapportNotificationsFailing alert (deploy/README.md, "Alerts")
    assert REGISTRY.get_sample_value("rapport_notifier_deliveries_total", failed) == before + 1
    assert await sender.claim() == []  # never again
    [ev] = await h.outbox_events("rapport.notification.failed.v1")
    assert ev["id"] == str(uuid.uuid5(r["notification_id"], "failed"))
    assert ev["error_code"] == "smtp_unreachable" and ev["attempts"] == 2
    assert not await h.outbox_events("rapport.notification.delivered.v1")


async def test_a_permanent_error_fails_at_once(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.script = [SendError("recipient_refused", "550", retryable=False)]
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "failed" and r["attempts"] == 1
    assert [e["error_code"] for e in await h.outbox_events("rapport.notification.failed.v1")] == ["recipient_refused"]


async def test_an_erased_patient_is_not_sent_a_pending_delivery(h):
    await patient(h, "P-9")
    await notice(h, to="patient:P-9")
    await h.exec("DELETE FROM patients")  # erasure after the delivery was planned
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    assert (await h.row("SELECT status, last_error FROM notifications"))["last_error"].startswith("no_contact_or_consent")
    assert h.email.sent == []


# ---------------------------------------------------------------- in doubt
async def test_a_delivery_whose_sender_died_mid_send_is_resent_in_doubt_with_the_same_key(h):
    await clinician(h, "c1")
    await notice(h)
    sender = h.sender()
    [claimed] = await sender.claim()  # (1) claimed and committed; the process then dies: nothing recorded
    await sender.reclaim()
    assert (await h.row("SELECT status FROM notifications"))["status"] == "sending"  # lease still running: untouched
    await h.exec("UPDATE notifications SET lease_until = now() - interval '1 second'")  # the lease expires
    await sender.reclaim()
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "ready" and r["in_doubt"] == 1
    [again] = await sender.claim()
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "delivered" and r["attempts"] == 2 and r["in_doubt"] == 1
    assert [m.idem_key for m in h.email.sent] == [r["idem_key"]]
    # The first process was not dead after all and finishes late: no second record, no second event.
    await sender.deliver(claimed)
    assert len(await h.outbox_events("rapport.notification.delivered.v1")) == 1
    log = await h.fetch("SELECT status, in_doubt, in_doubt_resends, in_doubt_resolved FROM notifications")
    assert [tuple(x.values()) for x in log] == [("delivered", 1, 1, 0)]  # no status lookup: resent blindly


async def in_doubt_after(h, sender, *, sent: bool):
    """Claim the one row; the process then dies, having handed the message to the provider
    (``sent``) or not; the lease expires and the row is reclaimed as in doubt. Returns the new claim."""
    [claimed] = await sender.claim()
    if sent:
        await h.email.send(await sender.prepare(claimed))
    await h.exec("UPDATE notifications SET lease_until = now() - interval '1 second'")
    await sender.reclaim()
    r = await h.row("SELECT * FROM notifications")
    assert r["status"] == "ready" and r["in_doubt"] == 1 and r["doubt_since"] is not None
    [again] = await sender.claim()
    return again


async def test_an_in_doubt_email_the_provider_accepted_is_recorded_delivered_not_sent_again(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.has_status_lookup = True
    sender = h.sender()
    again = await in_doubt_after(h, sender, sent=True)
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert len(h.email.sent) == 1  # only the dead process's send: the provider said it had it
    assert h.email.lookups == [str(r["notification_id"])]
    assert (r["status"], r["attempts"], r["in_doubt"], r["in_doubt_resolved"], r["in_doubt_resends"],
            r["status_lookups"], r["doubt_since"]) == ("delivered", 1, 1, 1, 0, 1, None)
    [ev] = await h.outbox_events("rapport.notification.delivered.v1")  # exactly as a normal delivery
    assert ev["id"] == str(uuid.uuid5(r["notification_id"], "delivered")) and ev["channel"] == "email"
    assert await sender.claim() == []


async def test_an_in_doubt_email_the_provider_did_not_accept_is_sent(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.has_status_lookup = True
    sender = h.sender()
    again = await in_doubt_after(h, sender, sent=False)  # died before the message left
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert [m.notification_id for m in h.email.sent] == [str(r["notification_id"])] and len(h.email.lookups) == 1
    assert (r["status"], r["attempts"], r["in_doubt_resolved"], r["in_doubt_resends"]) == ("delivered", 2, 1, 0)
    assert len(await h.outbox_events("rapport.notification.delivered.v1")) == 1


async def test_a_failing_status_lookup_sends_nothing_and_is_retried_then_falls_back_to_a_resend(make_harness):
    h = make_harness(send_timeout_s=0.3)
    await clinician(h, "c1")
    await notice(h)
    h.email.has_status_lookup = True
    h.email.status_script = [SendError("status_lookup_failed", "HTTP 503"), 5.0]  # an error, then a hang
    sender = h.sender()
    again = await in_doubt_after(h, sender, sent=True)
    for n, error in ((1, "status_lookup_failed"), (2, "status_lookup_timeout")):
        before = await h.val("SELECT clock_timestamp()")
        await sender.deliver(again)
        r = await h.row("SELECT * FROM notifications")
        assert len(h.email.sent) == 1 and len(h.email.lookups) == n  # nothing sent blindly
        assert (r["status"], r["attempts"], r["status_lookups"], r["in_doubt"]) == ("ready", 1, n, 1)
        assert r["doubt_since"] is not None and r["last_error"].startswith(error)
        assert r["next_attempt_at"] >= before + timedelta(seconds=30 * 2 ** (n - 1))  # backoff
        assert await sender.claim() == []
        await h.exec("UPDATE notifications SET next_attempt_at = now()")
        [again] = await sender.claim()
    # RETRY_FOR_S (3600 s) of doubt without an answer: sent again with the same key, counted
    h.email.status_script = [SendError("status_lookup_failed", "HTTP 503")]
    await h.exec("UPDATE notifications SET doubt_since = now() - interval '3601 seconds'")
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert [m.idem_key for m in h.email.sent] == [r["idem_key"]] * 2  # the same Message-ID, twice
    assert (r["status"], r["in_doubt"], r["in_doubt_resolved"], r["in_doubt_resends"]) == ("delivered", 1, 0, 1)
    assert len(await h.outbox_events("rapport.notification.delivered.v1")) == 1


async def test_with_a_status_lookup_a_send_that_broke_off_is_in_doubt_and_asked_about_first(make_harness):
    h = make_harness(send_timeout_s=0.3)
    await clinician(h, "c1")
    await notice(h)
    h.email.has_status_lookup = True
    h.email.script = [5.0]  # the send hangs past SEND_TIMEOUT_S ...
    sender = h.sender()
    [row] = await sender.claim()
    before = await h.val("SELECT clock_timestamp()")
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert (r["status"], r["in_doubt"], r["last_error"].split(":")[0]) == ("ready", 1, "timeout")
    assert r["doubt_since"] is not None
    assert r["next_attempt_at"] >= before + sender.lease  # not before an abandoned send could have finished
    h.email.accepted.append(str(r["notification_id"]))  # ... and had in fact reached the provider
    await h.exec("UPDATE notifications SET next_attempt_at = now()")
    [again] = await sender.claim()
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert len(h.email.sent) == 1 and len(h.email.lookups) == 1
    assert (r["status"], r["in_doubt_resolved"], r["in_doubt_resends"]) == ("delivered", 1, 0)
    # A definite refusal is no doubt: plain retry, nobody asked.
    await notice(h)
    h.email.script = [SendError("smtp_error", "451")]
    [row] = await sender.claim()
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications WHERE status = 'ready'")
    assert r["in_doubt"] == 0 and r["doubt_since"] is None


async def test_without_a_status_lookup_a_send_that_broke_off_is_a_plain_retry(make_harness):
    h = make_harness(send_timeout_s=0.3)
    await clinician(h, "c1")
    await notice(h)
    h.email.script = [5.0]
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    r = await h.row("SELECT * FROM notifications")
    assert (r["status"], r["in_doubt"], r["doubt_since"]) == ("ready", 0, None)


async def test_a_process_dying_while_settling_a_doubt_leaves_one_doubt(h):
    await clinician(h, "c1")
    await notice(h)
    h.email.has_status_lookup = True
    sender = h.sender()
    await in_doubt_after(h, sender, sent=True)  # claimed for the lookup; the process dies again
    await h.exec("UPDATE notifications SET lease_until = now() - interval '1 second'")
    await sender.reclaim()
    [again] = await sender.claim()
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert (r["status"], r["in_doubt"], r["in_doubt_resolved"], r["in_doubt_resends"]) == ("delivered", 1, 1, 0)
    assert len(h.email.sent) == 1


async def test_sms_has_no_status_lookup_and_is_resent_with_the_same_key(h):
    await clinician(h, "c1", ("sms",))
    await notice(h)
    h.email.has_status_lookup = True  # email's lookup is not asked about an SMS
    sender = h.sender()
    [claimed] = await sender.claim()
    await h.sms.send(await sender.prepare(claimed))
    await h.exec("UPDATE notifications SET lease_until = now() - interval '1 second'")
    await sender.reclaim()
    [again] = await sender.claim()
    await sender.deliver(again)
    r = await h.row("SELECT * FROM notifications")
    assert [m.idem_key for m in h.sms.sent] == [r["idem_key"]] * 2 and h.email.lookups == []
    assert (r["status"], r["in_doubt"], r["in_doubt_resends"]) == ("delivered", 1, 1)


# ---------------------------------------------------------------- replay mode
async def test_replay_mode_suppresses_every_send_and_emits_nothing(h, make_harness):
    rh = make_harness(replay_mode=True)
    await clinician(rh, "c1")
    await notice(rh)
    await notice(rh, to="patient:P-unknown")  # nobody reachable: recorded as failed, but not announced
    sender = rh.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    statuses = sorted(r["status"] for r in await rh.fetch("SELECT status FROM notifications"))
    assert statuses == ["failed", "suppressed"]
    assert all(not c.sent for c in rh.channels.values())
    assert await rh.outbox_events() == []
    # Outside replay mode the no-channel failure is announced, under a deterministic id.
    await notice(h, to="patient:P-unknown-2")
    [ev] = await h.outbox_events("rapport.notification.failed.v1")
    nid = await h.val("SELECT notification_id FROM notifications WHERE recipient_ref = 'patient:P-unknown-2'")
    assert ev["id"] == str(uuid.uuid5(nid, "failed")) and ev["error_code"] == "no_channel"


# ---------------------------------------------------------------- projections a replay cannot rewind
def course(ep, person, sessions, t) -> CoursePlannedV1:
    planned = [PlannedSession(session_id=s, number=n, starts_at=at, duration_minutes=50) for n, (s, at) in
               enumerate(sessions, 1)]
    return CoursePlannedV1(episode_id=ep, course_id=uuid.uuid4(), person_id=person, template_id="ipt_depression_16",
                           clinician_id="c1", contracted_sessions=len(planned),
                           phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=len(planned))],
                           sessions=planned, first_session_at=planned[0].starts_at, planned_end_at=planned[-1].starts_at,
                           planned_at=t)


async def test_reprocessed_older_session_events_do_not_move_a_session_back(h):
    await patient(h, "P-1")
    await clinician(h, "c1")
    t, ep, s = h.clock.now(), uuid.uuid4(), uuid.uuid4()
    at = t + timedelta(days=4)
    planned = course(ep, "P-1", [(s, at)], t)
    p = await h.handle(planned, at=t)
    moves = []
    for i, hours in enumerate((3, 6), 1):  # two reschedules, later each time
        data = SessionRescheduledV1(episode_id=ep, course_id=planned.course_id, session_id=s, number=1,
                                    previous_starts_at=at + timedelta(hours=hours - 3) if i > 1 else at,
                                    starts_at=at + timedelta(hours=hours), reason_code="patient_request",
                                    rescheduled_at=t + timedelta(hours=i))
        moves.append((data, await h.handle(data, at=t + timedelta(hours=i))))
    final = at + timedelta(hours=6)
    # The reminder for the final time is due; the planned and first-moved reminder times have
    # passed, while the planned session time is still ahead: a rewound session would be reminded again.
    h.clock.set(final - timedelta(hours=23))
    await h.fire_due()
    [rem] = await h.fetch("SELECT * FROM notifications WHERE kind = 'session_reminder'")
    assert rem["cause_event_id"] == uuid.UUID(moves[-1][1].id)
    # Replay everything in order, inbox bypassed, firing due timers after every event.
    for data, ev in [(planned, p), *moves]:
        await h.handle(data, event_id=ev.id, at=ev.time)
        await h.fire_due()
        row = await h.row("SELECT starts_at, status FROM sessions WHERE session_id = $1", s)
        assert (row["starts_at"], row["status"]) == (final, "scheduled")
    # ... and an older reschedule arriving late on its own
    await h.handle(moves[0][0], event_id=moves[0][1].id, at=moves[0][1].time)
    await h.fire_due()
    assert (await h.val("SELECT starts_at FROM sessions WHERE session_id = $1", s)) == final
    assert len(await h.fetch("SELECT * FROM notifications WHERE kind = 'session_reminder'")) == 1
    # An attended session stays attended when its planning event is processed again.
    await h.handle(SessionAttendedV1(episode_id=ep, course_id=planned.course_id, session_id=s, number=1,
                                     attended_sessions=1, contracted_sessions=1, phase="initial",
                                     attended_at=h.clock.now()), at=h.clock.now())
    await h.handle(planned, event_id=p.id, at=p.time)
    await h.fire_due()
    assert await h.val("SELECT status FROM sessions WHERE session_id = $1", s) == "attended"
    assert await h.val("SELECT count(*) FROM timers WHERE key = $1 AND fired_at IS NULL AND cancelled_at IS NULL",
                       f"session:{s}") == 0


async def test_a_reprocessed_alert_does_not_page_whoever_is_on_call_now(h):
    for c in ("c1", "oncall-a", "oncall-b"):
        await clinician(h, c)
    t = h.clock.now()
    await h.exec("INSERT INTO oncall VALUES ($1, 'oncall-a', $2, $3)", uuid.uuid4(), t - timedelta(hours=1), t + timedelta(hours=1))
    ep, alert = uuid.uuid4(), uuid.uuid4()
    raised = AlertRaisedV1(episode_id=ep, alert_id=alert, kind="safety", urgency="urgent", reason_code="safety_item_positive",
                           clinician_id="c1", instrument="phq9", raised_at=t)
    ev = await h.handle(raised, at=t)
    h.clock.set(t + timedelta(minutes=16))
    await h.fire_due()
    refs = sorted(r["recipient_ref"] for r in await h.fetch("SELECT recipient_ref FROM notifications"))
    assert refs == ["clinician:c1", "oncall:oncall-a"]
    # The rota changes; the alert is processed again (replay, inbox bypassed) and time moves on.
    await h.exec("UPDATE oncall SET clinician_id = 'oncall-b'")
    await h.handle(raised, event_id=ev.id, at=ev.time)
    h.clock.set(t + timedelta(minutes=40))
    await h.fire_due()
    assert refs == sorted(r["recipient_ref"] for r in await h.fetch("SELECT recipient_ref FROM notifications"))


# ---------------------------------------------------------------- language from the contact record
async def test_patient_language_comes_from_the_contact_record_unless_overridden(h):
    kr = Keyring.development()
    for pid, lang in (("P-es", "es"), ("P-fr", "fr"), ("P-none", None)):
        rec = encode_contact(ContactRecordV1(person_id=pid, email=f"{pid}@patients.test", channel_consent={"email": True},
                                             language=lang, updated_at=h.clock.now()), kr)
        async with h.pool.acquire() as conn:
            assert await apply_record(conn, rec.key, rec.value, rec.kafka_headers(), kr, h.clock.now()) == "upserted"
    async with h.pool.acquire() as conn:
        got = {pid: await handlers.recipient_channels(h.make_uow(conn), f"patient:{pid}", False)
               for pid in ("P-es", "P-fr", "P-none")}
    assert got == {"P-es": (["email"], "es"), "P-fr": (["email"], "en"),  # fr: no complete template set
                   "P-none": (["email"], "en")}
    await h.exec("INSERT INTO patient_preferences (person_id, language, updated_at) VALUES ('P-es', 'en', now())")
    async with h.pool.acquire() as conn:
        assert await handlers.recipient_channels(h.make_uow(conn), "patient:P-es", False) == (["email"], "en")
    # and a reminder is rendered in the record's language
    await h.exec("DELETE FROM patient_preferences")
    await enqueue(h, kind=rules.SESSION_REMINDER, cause_event_id=uuid.uuid4(), episode_id=uuid.uuid4(),
                  recipient_ref="patient:P-es", params={"session_number": 3, "starts_at": "x", "timezone": "UTC"})
    sender = h.sender()
    [row] = await sender.claim()
    await sender.deliver(row)
    assert "sesión 3" in h.email.sent[0].subject


async def test_a_subscription_gets_events_from_its_creation_on_even_when_history_is_reprocessed(h):
    t = h.clock.now()
    sub = uuid.uuid4()
    await h.exec("INSERT INTO subscriptions (subscription_id, partner_id, url, secret, event_types, created_at, effective_from,"
                 " organisation_id) VALUES ($1, 'p1', 'https://partner.example/h', 'whsec_AAAA', '{rapport.alert.raised.v1}',"
                 " now(), $2, 'org-test')", sub, t)
    await clinician(h, "c1")
    episode = uuid.uuid4()  # an episode of the partner's organisation
    await h.exec("INSERT INTO episodes (episode_id, clinician_id, organisation_id) VALUES ($1, 'c1', 'org-test')", episode)

    def raised(at):
        return AlertRaisedV1(episode_id=episode, alert_id=uuid.uuid4(), kind="review", urgency="routine",
                             reason_code="deterioration", clinician_id="c1", instrument="phq9", raised_at=at)
    old = await h.handle(raised(t - timedelta(days=3)), at=t - timedelta(days=3))  # before the subscription
    new = await h.handle(raised(t + timedelta(minutes=1)), at=t + timedelta(minutes=1))
    hooks = await h.fetch("SELECT cause_event_id FROM notifications WHERE channel = 'webhook'")
    assert [str(r["cause_event_id"]) for r in hooks] == [new.id] and old.id != new.id
