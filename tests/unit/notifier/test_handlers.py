"""The notifier's service layer on a fake unit of work (no Postgres, no Kafka): events → plans and
deliveries, due plans → deliveries, HTTP commands → recipients and acknowledgements."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from rapport_notifier.domain import commands, rules
from rapport_notifier.service_layer.handlers import SESSION_TIMERS, T_ESCALATION, T_QREMINDER, T_QREQUEST, T_REMINDER
from rapport_shared.contracts import NotificationFailedV1
from rapport_shared.contracts.course import (CoursePlannedV1, CourseReviewNeededV1, PhaseChangedV1, PhaseSpan,
                                             PlannedSession, SessionCancelledV1, SessionRescheduledV1)
from rapport_shared.contracts.intake import IntakeCompletedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1, ScoreSubmittedV1
from rapport_shared.errors import Invalid, NotFound

from .fakes import FakeNotifierUnitOfWork, settings

pytestmark = pytest.mark.unit

ORG = "org-a"


@pytest.fixture
def uow() -> FakeNotifierUnitOfWork:
    u = FakeNotifierUnitOfWork()
    u.patients.add("P-1", email="p1@patients.test", consent={"email": True})
    return u


def planned(uow, *, sessions=2, days=(3, 10), clinician="c1", person="P-1") -> CoursePlannedV1:
    t = uow.now()
    return CoursePlannedV1(
        episode_id=uuid.uuid4(), course_id=uuid.uuid4(), person_id=person, template_id="ipt_depression_16",
        clinician_id=clinician, contracted_sessions=sessions,
        phase_plan=[PhaseSpan(phase="initial", first_session=1, last_session=sessions)],
        sessions=[PlannedSession(session_id=uuid.uuid4(), number=n + 1, starts_at=t + timedelta(days=d),
                                 duration_minutes=50) for n, d in enumerate(days[:sessions])],
        first_session_at=t + timedelta(days=days[0]), planned_end_at=t + timedelta(days=days[sessions - 1]),
        planned_at=t)


async def intake(uow, course: CoursePlannedV1, org: str | None = ORG) -> None:
    """The intake that referred the course's episode, naming its organisation."""
    at = uow.now() - timedelta(days=1)
    await uow.handle(IntakeCompletedV1(
        episode_id=course.episode_id, person_id=course.person_id, target_condition="depression",
        template_id="ipt-standard", focus={"primary": "grief"}, clinician_id=course.clinician_id,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=at, completed_at=at + timedelta(hours=1), organisation_id=org))


def raised(episode_id, clinician="c1", kind="safety", at=None) -> AlertRaisedV1:
    return AlertRaisedV1(episode_id=episode_id, alert_id=uuid.uuid4(), kind=kind,
                         urgency="urgent" if kind == "safety" else "routine",
                         reason_code="safety_item_positive" if kind == "safety" else "reliable_deterioration",
                         clinician_id=clinician, instrument="phq9", raised_at=at)


async def clinician(uow, cid="c1", channels=("email", "sms"), working_hours=None, org=ORG) -> None:
    await uow.command(commands.PutClinician(clinician_id=cid, org=org, email=f"{cid}@clinic.test",
                                            phone="+447700900001", channels=tuple(channels),
                                            working_hours=working_hours))


# ---------------------------------------------------------------- course planned → plans → reminders
async def test_a_planned_course_plans_reminders_and_questionnaires_and_tells_the_clinician(uow):
    await clinician(uow)
    course = planned(uow)
    event = await uow.handle(course)
    s = uow.settings
    for sess in course.sessions:
        key = f"session:{sess.session_id}"
        assert uow.timers.due(T_REMINDER, key) == sess.starts_at - s.session_reminder_lead
        assert uow.timers.due(T_QREQUEST, key) == sess.starts_at - s.questionnaire_lead
    [note] = uow.deliveries.of(rules.COURSE_PLANNED)
    assert note["recipient_ref"] == "clinician:c1" and note["channel"] == "email"  # not urgent: first channel only
    assert note["idem_key"] == rules.idem_key(event.id, "clinician:c1", "email", rules.COURSE_PLANNED)
    assert uow.deliveries.wakes >= 1

    # The first session's questionnaire request, then its reminder: to the patient, once each.
    first = course.sessions[0]
    await uow.advance_to(first.starts_at - s.questionnaire_lead)
    [req] = uow.deliveries.of(rules.QUESTIONNAIRE_REQUEST)
    assert req["recipient_ref"] == "patient:P-1" and req["channel"] == "email"
    assert req["params"]["instruments"] == "phq9" and req["params"]["session_number"] == 1
    assert uow.timers.due(T_QREMINDER, f"session:{first.session_id}") == uow.now() + s.questionnaire_reminder_after
    await uow.advance_to(first.starts_at - s.session_reminder_lead)
    [reminder] = uow.deliveries.of(rules.SESSION_REMINDER)
    assert reminder["params"]["timezone"] == "UTC"
    assert reminder["idem_key"].endswith(f"/{rules.SESSION_REMINDER}/session:{first.session_id}")
    assert reminder["cause_event_id"] == uuid.UUID(event.id)


async def test_the_same_course_planned_again_plans_and_writes_nothing_new(uow):
    course = planned(uow)
    event = await uow.handle(course)
    plans, rows = dict(uow.timers.live), dict(uow.deliveries.rows)
    await uow.handle(course, event_id=event.id, at=event.time)
    assert uow.timers.live == plans and uow.deliveries.rows == rows


async def test_an_answered_questionnaire_is_not_reminded(uow):
    course = planned(uow, sessions=1)
    await uow.handle(course)
    first = course.sessions[0]
    await uow.advance_to(first.starts_at - uow.settings.questionnaire_lead)
    assert uow.timers.due(T_QREMINDER, f"session:{first.session_id}")
    await uow.handle(ScoreSubmittedV1(episode_id=course.episode_id, submission_id=uuid.uuid4(), instrument="phq9",
                                      timepoint="session", session_number=1, total=3, administered_at=uow.now(),
                                      scored_at=uow.now()))
    assert uow.timers.due(T_QREMINDER, f"session:{first.session_id}") is None


async def test_quiet_hours_defer_a_patient_reminder_to_their_end(uow):
    uow.patients.add("P-1", email="p1@patients.test", consent={"email": True},
                     quiet_hours={"start": "00:00", "end": "23:59", "timezone": "UTC"})
    course = planned(uow, sessions=1)
    await uow.handle(course)
    key = f"session:{course.sessions[0].session_id}"
    due = uow.timers.due(T_REMINDER, key)
    await uow.advance_to(due)
    assert uow.deliveries.of(rules.SESSION_REMINDER) == []
    assert uow.timers.due(T_REMINDER, key).strftime("%H:%M") == "23:59"  # moved to the end of the quiet period


# ---------------------------------------------------------------- sessions moved / cancelled
async def test_a_rescheduled_session_moves_its_plans_and_a_cancelled_one_drops_them(uow):
    course = planned(uow)
    await uow.handle(course)
    sess = course.sessions[0]
    key = f"session:{sess.session_id}"
    later = sess.starts_at + timedelta(days=2)
    await uow.handle(SessionRescheduledV1(episode_id=course.episode_id, course_id=course.course_id,
                                          session_id=sess.session_id, number=1, previous_starts_at=sess.starts_at,
                                          starts_at=later, reason_code="clinician_unavailable",
                                          rescheduled_at=uow.now()))
    assert uow.timers.due(T_REMINDER, key) == later - uow.settings.session_reminder_lead
    assert uow.timers.due(T_QREQUEST, key) == later - uow.settings.questionnaire_lead
    assert (await uow.sessions.get(sess.session_id))["starts_at"] == later

    await uow.handle(SessionCancelledV1(episode_id=course.episode_id, course_id=course.course_id,
                                        session_id=sess.session_id, number=1, cancelled_by="clinic",
                                        reason_code="clinician_unavailable", cancelled_at=uow.now()))
    assert all(uow.timers.due(kind, key) is None for kind in SESSION_TIMERS)
    assert (await uow.sessions.get(sess.session_id))["status"] == "cancelled"
    other = f"session:{course.sessions[1].session_id}"
    assert uow.timers.due(T_REMINDER, other) is not None  # the other session keeps its plans
    await uow.advance(timedelta(days=30))
    assert [r["params"]["session_number"] for r in uow.deliveries.of(rules.SESSION_REMINDER)] == [2]


async def test_an_older_reschedule_does_not_move_a_session_back(uow):
    course = planned(uow, sessions=1)
    await uow.handle(course)
    sess = course.sessions[0]
    move = dict(episode_id=course.episode_id, course_id=course.course_id, session_id=sess.session_id, number=1,
                previous_starts_at=sess.starts_at, reason_code="patient_request", rescheduled_at=uow.now())
    await uow.handle(SessionRescheduledV1(**move, starts_at=sess.starts_at + timedelta(days=2)),
                     at=uow.now() + timedelta(minutes=5))
    await uow.handle(SessionRescheduledV1(**move, starts_at=sess.starts_at + timedelta(days=1)))  # older event
    assert (await uow.sessions.get(sess.session_id))["starts_at"] == sess.starts_at + timedelta(days=2)


# ---------------------------------------------------------------- safety alerts
async def test_a_safety_alert_pages_every_channel_of_the_clinician_and_arms_the_escalation(uow):
    await clinician(uow)
    course = planned(uow)
    await intake(uow, course)
    await uow.handle(course)
    alert = raised(course.episode_id, at=uow.now())
    event = await uow.handle(alert)
    pages = uow.deliveries.of(rules.SAFETY_ALERT)
    assert {(p["recipient_ref"], p["channel"]) for p in pages} == {("clinician:c1", "email"), ("clinician:c1", "sms")}
    assert all(p["alert_id"] == alert.alert_id and p["status"] == "ready" for p in pages)
    key = f"alert:{alert.alert_id}"
    assert uow.timers.due(T_ESCALATION, key) == uow.now() + uow.settings.escalation_after
    assert uow.timers.live[(T_ESCALATION, key)][1]["cause_event_id"] == event.id
    assert not (await uow.alerts.get(alert.alert_id))["out_of_hours"]  # no working hours: no on-call page at once

    # Unacknowledged: the escalation pages whoever is on call then.
    await uow.command(commands.ReplaceOncall(org=ORG, slots=(commands.OncallSlot(
        "oc1", uow.now(), uow.now() + timedelta(hours=8)),)))
    await uow.advance(uow.settings.escalation_after)
    [esc] = uow.deliveries.of(rules.SAFETY_ESCALATION)
    assert esc["recipient_ref"] == "oncall:oc1" and esc["channel"] == "log"  # an unknown clinician: the log channel
    assert (await uow.alerts.get(alert.alert_id))["escalated_at"] == uow.now()


async def test_out_of_hours_the_on_call_clinician_is_paged_at_once(uow):
    # c1 works Mondays only; the fake clock's start (2026-01-05 09:00 UTC) is a Monday: move to Tuesday.
    await clinician(uow, working_hours={"timezone": "UTC", "slots": [{"day": "mon", "start": "09:00", "end": "17:00"}]})
    course = planned(uow)
    await intake(uow, course)
    await uow.handle(course)
    await uow.command(commands.ReplaceOncall(org=ORG, slots=(
        commands.OncallSlot("oc1", uow.now(), uow.now() + timedelta(days=7)),
        commands.OncallSlot("c1", uow.now(), uow.now() + timedelta(days=7)))))  # not paged twice
    await uow.advance(timedelta(days=1))
    alert = raised(course.episode_id, at=uow.now())
    await uow.handle(alert)
    pages = uow.deliveries.of(rules.SAFETY_ALERT)
    assert sorted({p["recipient_ref"] for p in pages}) == ["clinician:c1", "oncall:oc1"]
    assert (await uow.alerts.get(alert.alert_id))["out_of_hours"]
    assert uow.timers.due(T_ESCALATION, f"alert:{alert.alert_id}") is not None  # the escalation still follows


async def test_out_of_hours_with_nobody_on_call_pages_the_fallback_or_records_the_failure():
    for fallback, expected in (("duty@clinic.test", ("oncall:fallback", "email", "ready")),
                               ("", ("oncall:fallback", "none", "failed"))):
        uow = FakeNotifierUnitOfWork(settings=settings(safety_fallback=fallback))
        await clinician(uow, working_hours={"timezone": "UTC", "slots": [{"day": "sun", "start": "09:00", "end": "10:00"}]})
        course = planned(uow)
        await uow.handle(course)
        await uow.handle(raised(course.episode_id, at=uow.now()))
        [page] = uow.deliveries.of(rules.SAFETY_ALERT, recipient_ref="oncall:fallback")
        assert (page["recipient_ref"], page["channel"], page["status"]) == expected
        assert page["params"]["fallback"] is True
        failed = uow.of_type(NotificationFailedV1)
        assert [f.error_code for f in failed] == ([] if fallback else ["no_channel"])


async def test_a_resolved_alert_stops_the_escalation_and_unsent_pages(uow):
    await clinician(uow)
    course = planned(uow)
    await uow.handle(course)
    alert = raised(course.episode_id, at=uow.now())
    await uow.handle(alert)
    await uow.handle(AlertResolvedV1(episode_id=course.episode_id, alert_id=alert.alert_id, kind="safety",
                                     resolved_by="c1", action="safety_plan", resolved_at=uow.now()))
    assert uow.timers.due(T_ESCALATION, f"alert:{alert.alert_id}") is None
    assert {p["status"] for p in uow.deliveries.of(rules.SAFETY_ALERT)} == {"cancelled"}
    assert {p["last_error"] for p in uow.deliveries.of(rules.SAFETY_ALERT)} == {"alert_resolved"}
    await uow.advance(timedelta(hours=1))
    assert uow.deliveries.of(rules.SAFETY_ESCALATION) == []


async def test_an_acknowledged_alert_is_not_escalated_and_the_first_acknowledgement_stands(uow):
    await clinician(uow)
    course = planned(uow)
    await uow.handle(course)
    alert = raised(course.episode_id, at=uow.now())
    await uow.handle(alert)
    row = await uow.command(commands.AcknowledgeAlert(alert_id=alert.alert_id, by="c1"))
    assert row["acknowledged_by"] == "c1" and row["escalated_at"] is None
    again = await uow.command(commands.AcknowledgeAlert(alert_id=alert.alert_id, by="oc1"))
    assert again["acknowledged_by"] == "c1"
    assert uow.timers.due(T_ESCALATION, f"alert:{alert.alert_id}") is None
    with pytest.raises(NotFound) as e:
        await uow.command(commands.AcknowledgeAlert(alert_id=uuid.uuid4(), by="c1"))
    assert e.value.field == "alert_id"


async def test_a_replayed_alert_pages_nobody_again(uow):
    await clinician(uow)
    course = planned(uow)
    await uow.handle(course)
    alert = raised(course.episode_id, at=uow.now())
    event = await uow.handle(alert)
    rows = len(uow.deliveries.rows)
    await uow.handle(alert, event_id=str(uuid.uuid4()), at=event.time)  # same alert, another envelope
    assert len(uow.deliveries.rows) == rows


# ---------------------------------------------------------------- clinician notices
async def test_phase_changes_and_review_notices_go_to_the_treating_clinician(uow):
    await clinician(uow, channels=("sms", "email"))
    course = planned(uow)
    await uow.handle(course)
    await uow.handle(PhaseChangedV1(episode_id=course.episode_id, course_id=course.course_id, from_phase="initial",
                                    to_phase="middle", effective_from_session=2, reason="checklist_complete",
                                    changed_at=uow.now()))
    [phase] = uow.deliveries.of(rules.PHASE_CHANGE)
    assert (phase["recipient_ref"], phase["channel"]) == ("clinician:c1", "sms")
    assert phase["params"]["to_phase"] == "middle" and phase["params"]["sessions_remaining"] == "-"
    await uow.handle(CourseReviewNeededV1(episode_id=course.episode_id, course_id=course.course_id, clinician_id="c2",
                                          reason="initial_checklist_incomplete", phase="initial", session_number=1,
                                          raised_at=uow.now()))
    [review] = uow.deliveries.of(rules.REVIEW_NOTICE)
    assert review["recipient_ref"] == "clinician:c2" and review["channel"] == "log"  # unknown here: the log channel
    routine = raised(course.episode_id, kind="review", at=uow.now())
    await uow.handle(routine)
    assert uow.deliveries.of(rules.REVIEW_NOTICE, alert_id=routine.alert_id)
    assert uow.timers.due(T_ESCALATION, f"alert:{routine.alert_id}") is None  # only safety alerts escalate


async def test_a_phase_change_of_an_unknown_episode_notifies_nobody(uow):
    await uow.handle(PhaseChangedV1(episode_id=uuid.uuid4(), course_id=uuid.uuid4(), from_phase="initial",
                                    to_phase="middle", effective_from_session=2, reason="checklist_complete",
                                    changed_at=uow.now()))
    assert uow.deliveries.rows == {}


# ---------------------------------------------------------------- partner webhooks
async def test_partners_receive_their_organisations_events_from_their_subscription_on(uow):
    row, secret = await uow.command(commands.Subscribe(partner_id="partner-1", org=ORG, url="https://partner.example/hook",
                                                       event_types=("rapport.course.planned.v1",)))
    assert secret.startswith("whsec_")
    course = planned(uow)
    await uow.handle(course)
    assert uow.deliveries.of(rules.PARTNER_EVENT) == []  # the episode's organisation is not known
    await intake(uow, course, org="org-b")
    await uow.handle(course, event_id=str(uuid.uuid4()))
    assert uow.deliveries.of(rules.PARTNER_EVENT) == []  # another organisation's episode
    other = planned(uow)
    await intake(uow, other)
    event = await uow.handle(other)
    [push] = uow.deliveries.of(rules.PARTNER_EVENT)
    assert push["recipient_ref"] == f"partner:{row['subscription_id']}" and push["channel"] == "webhook"
    assert push["params"]["body"] == rules.structured(event)


# ---------------------------------------------------------------- commands
async def test_clinician_settings_are_refused_naming_the_field(uow):
    with pytest.raises(Invalid) as e:
        await clinician(uow, working_hours={"timezone": "UTC", "slots": [{"day": "monday", "start": "09:00",
                                                                          "end": "17:00"}]})
    assert e.value.field == "working_hours.slots.0.day" and e.value.code == "Invalid"
    with pytest.raises(Invalid) as e:
        await uow.command(commands.PutClinician(clinician_id="c1", org=ORG, channels=("sms",)))
    assert e.value.field == "channels"
    with pytest.raises(Invalid) as e:
        await uow.command(commands.PutClinician(clinician_id="c1", org=ORG, language="xx"))
    assert e.value.field == "language"
    with pytest.raises(Invalid) as e:
        await clinician(uow, org=None)
    assert e.value.field == "org"
    assert uow.clinicians.rows == {}


async def test_another_organisations_clinician_is_not_found_and_not_erased(uow):
    await clinician(uow)
    with pytest.raises(NotFound):
        await clinician(uow, org="org-b")
    assert await uow.command(commands.EraseClinician(clinician_id="c1", org="org-b")) is False
    assert await uow.command(commands.EraseClinician(clinician_id="c1", org=ORG)) is True


async def test_patient_preferences_are_checked_and_override_the_contact_language(uow):
    with pytest.raises(Invalid) as e:
        await uow.command(commands.SetPatientPreferences(person_id="P-1", quiet_hours={"start": "25:00"}))
    assert e.value.field == "quiet_hours.start"
    await uow.command(commands.SetPatientPreferences(person_id="P-1", language="es"))
    course = planned(uow, sessions=1)
    await uow.handle(course)
    await uow.advance_to(course.sessions[0].starts_at - uow.settings.session_reminder_lead)
    [reminder] = uow.deliveries.of(rules.SESSION_REMINDER)
    assert reminder["language"] == "es"
    assert await uow.command(commands.ErasePatient(person_id="P-1")) is True
    assert await uow.command(commands.ErasePatient(person_id="P-1")) is False
