"""Outcomes' handlers with a fake unit of work (no Postgres, no Kafka): the main flows — a baseline
recorded from intake, a submission scored and announced, safety alerts raised and repeated, the
end-of-course evaluation, and the refusals of a submission or a resolution (nothing written)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from outcomes_fakes import FakeOutcomes

from rapport_outcomes.domain.alerts import AlreadyResolved
from rapport_outcomes.domain.commands import (
    Actor,
    RecordResolution,
    ResolveAlert,
    SubmitQuestionnaire,
    SubmitScores,
)
from rapport_outcomes.domain.model import KeyReused, RaterNotAllowed, Refused, Unknown
from rapport_outcomes.settings import OutcomesSettings
from rapport_shared.consumer import PoisonEvent
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.course import CourseEndedV1, CoursePlannedV1, SessionAttendedV1
from rapport_shared.contracts.outcomes import (
    AlertKind,
    AlertRaisedV1,
    AlertResolvedV1,
    AlertUrgency,
    OutcomeEvaluatedV1,
    ReliableChange,
    ScoreSubmittedV1,
    Timepoint,
)
from rapport_shared.http.errors import status_for
from rapport_testing.flows import phq9

pytestmark = pytest.mark.unit

ORG = "org-test"
CLINICIAN = "clin-1"


def intake(fake: FakeOutcomes, *, baseline: dict[str, dict[str, int]] | None = None,
           organisation_id: str | None = ORG) -> IntakeCompletedV1:
    referred = fake.clock.now() - timedelta(days=1)
    return IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id=f"P-{uuid.uuid4().hex[:10]}", target_condition="depression",
        template_id="ipt-standard", focus={"primary": "grief"}, clinician_id=CLINICIAN,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        baseline_scores=[{"instrument": code, "answers": answers, "total": float(sum(answers.values())),
                          "administered_at": referred + timedelta(hours=1)}
                         for code, answers in (baseline if baseline is not None else {"phq9": phq9(18)}).items()],
        referred_at=referred, completed_at=referred + timedelta(hours=2), organisation_id=organisation_id)


def submission(data: IntakeCompletedV1, answers: dict[str, int], *, key: str | None = None, instrument: str = "phq9",
               at: datetime | None = None, roles: frozenset[str] = frozenset({"patient_app"}),
               **over) -> SubmitQuestionnaire:
    scores = SubmitScores(client_submission_id=key or f"app-{uuid.uuid4().hex}", instrument=instrument,
                          answers=answers, administered_at=at or datetime.now().astimezone(), **over)
    return SubmitQuestionnaire(episode_id=data.episode_id, actor=Actor(data.person_id, roles), scores=scores)


async def opened(fake: FakeOutcomes, **kw) -> IntakeCompletedV1:
    data = intake(fake, **kw)
    await fake.deliver(data)
    return data


def at(fake: FakeOutcomes, hours: float = 0) -> datetime:
    return fake.clock.now() + timedelta(hours=hours)


# ---- intake ---------------------------------------------------------------------------------

async def test_intake_completed_opens_the_episode_with_its_rescored_baseline() -> None:
    fake = FakeOutcomes()
    data = intake(fake, baseline={"phq9": phq9(18), "gad7": {str(n): 2 for n in range(1, 8)}})
    event = await fake.deliver(data, correlation_id="corr-1")

    episode = fake.tables.episodes[data.episode_id]
    assert (episode.organisation_id, episode.correlation_id, episode.target_condition) == (ORG, "corr-1", "depression")
    stored = {s.submission.instrument: s for s in fake.tables.submissions.values()}
    assert sorted(stored) == ["gad7", "phq9"]
    phq = stored["phq9"]
    # The same intake event always names the same submissions.
    assert phq.submission.submission_id == uuid.uuid5(uuid.UUID(event.id), "phq9")
    assert (phq.source, phq.submitted_by, phq.submission.timepoint) == ("intake", f"intake:{event.id}",
                                                                        Timepoint.baseline)
    scores = fake.of_type(ScoreSubmittedV1)
    assert [(s.instrument, s.total, s.band, s.organisation_id) for s in scores] == [
        ("phq9", 18.0, "moderately_severe", ORG), ("gad7", 14.0, "moderate", ORG)]
    assert all(e.correlation_id == "corr-1" for e in fake.events)


async def test_intake_sent_again_under_a_new_event_id_records_the_baselines_once() -> None:
    fake = FakeOutcomes()
    data = intake(fake)
    await fake.deliver(data)
    await fake.deliver(data)
    assert len(fake.tables.submissions) == 1 and len(fake.of_type(ScoreSubmittedV1)) == 1


async def test_an_older_intake_event_takes_the_configured_organisation() -> None:
    defaulted = FakeOutcomes(OutcomesSettings(default_organisation="org-default"))
    data = await opened(defaulted, organisation_id=None)
    assert defaulted.tables.episodes[data.episode_id].organisation_id == "org-default"
    orphan = FakeOutcomes(OutcomesSettings(default_organisation=""))
    data = await opened(orphan, organisation_id=None)
    assert orphan.tables.episodes[data.episode_id].organisation_id is None


async def test_an_unscorable_baseline_dead_letters_the_intake_event() -> None:
    fake = FakeOutcomes()
    with pytest.raises(PoisonEvent, match="baseline phq9"):
        await fake.deliver(intake(fake, baseline={"phq9": {**phq9(18), "9": 7}}))


# ---- submissions ----------------------------------------------------------------------------

async def test_a_submission_is_scored_against_its_baseline_and_announced() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    accepted = await fake.handle(submission(data, phq9(8), session_number=4, at=at(fake, -1)))

    s = accepted.submission
    assert not accepted.replayed
    assert (s.timepoint, s.total, s.baseline_total, s.change_from_baseline, s.reliable_change) == (
        Timepoint.session, 8, 18, -10, ReliableChange.improved)
    score = fake.last.of_type(ScoreSubmittedV1)
    assert [(e.submission_id, e.total, e.change_from_baseline, e.alert_ids, e.organisation_id) for e in score] == [
        (s.submission_id, 8.0, -10.0, [], ORG)]
    row = fake.tables.submissions[s.submission_id]
    assert (row.source, row.submitted_by, row.submitted_role) == ("http", data.person_id, "patient_app")
    assert fake.last.committed


async def test_the_same_client_key_again_answers_the_stored_submission_and_announces_nothing() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    cmd = submission(data, phq9(8), key="app-1", at=at(fake, -1))
    first = await fake.handle(cmd)
    again = await fake.handle(cmd)
    assert again.replayed and again.submission.submission_id == first.submission.submission_id
    assert fake.last.emitted == []
    with pytest.raises(KeyReused) as exc:
        await fake.handle(submission(data, phq9(9), key="app-1", at=at(fake, -1)))
    assert (exc.value.field, status_for(exc.value)) == ("client_submission_id", 409)
    assert len(fake.tables.submissions) == 2  # the baseline and the first send


async def test_submission_refusals_write_nothing() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    before = (len(fake.tables.submissions), len(fake.emitted))

    with pytest.raises(Unknown) as unknown:
        await fake.handle(SubmitQuestionnaire(episode_id=uuid.uuid4(), actor=Actor("P-x", frozenset({"patient_app"})),
                                              scores=submission(data, phq9(8)).scores))
    assert (unknown.value.field, status_for(unknown.value)) == ("episode_id", 404)
    with pytest.raises(RaterNotAllowed) as rater:
        await fake.handle(submission(data, {str(n): 0 for n in range(1, 18)}, instrument="hamd17"))
    assert status_for(rater.value) == 403
    with pytest.raises(Refused) as future:
        await fake.handle(submission(data, phq9(8), at=at(fake, 1)))
    assert (future.value.field, future.value.reason, status_for(future.value)) == (
        "administered_at", "is in the future", 422)
    with pytest.raises(Refused) as item:
        await fake.handle(submission(data, {**phq9(8), "9": 4}))
    assert item.value.field == "answers.item_9"

    assert (len(fake.tables.submissions), len(fake.emitted)) == before
    assert not fake.tables.alerts


# ---- safety alerts --------------------------------------------------------------------------

async def test_a_positive_item_9_raises_a_safety_alert_after_its_score() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    accepted = await fake.handle(submission(data, phq9(12, item9=2), session_number=2, at=at(fake, -1)))

    [alert_id] = accepted.submission.alert_ids
    score, raised = fake.last.emitted  # the score first: it names the alert it caused
    assert isinstance(score, ScoreSubmittedV1) and score.alert_ids == [alert_id]
    assert isinstance(raised, AlertRaisedV1)
    assert (raised.alert_id, raised.kind, raised.urgency, raised.clinician_id, raised.submission_id,
            raised.session_number, raised.linked_alert_ids, raised.organisation_id) == (
        alert_id, AlertKind.safety, AlertUrgency.urgent, CLINICIAN, accepted.submission.submission_id, 2, [], ORG)
    alert = fake.tables.alerts[alert_id]
    assert (alert["status"], alert["reason_code"]) == ("open", "safety_item_positive")
    [audit] = fake.tables.alert_audit
    assert (audit["action"], audit["actor"], str(audit["event_id"])) == ("raised", "system", fake.last.events[1].id)


async def test_a_repeated_positive_item_9_raises_another_alert_linked_to_the_open_one() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    first = await fake.handle(submission(data, phq9(14, item9=1), session_number=2, at=at(fake, -2)))
    [first_alert] = first.submission.alert_ids
    fake.clock.advance(timedelta(minutes=5))
    second = await fake.handle(submission(data, phq9(12, item9=2), session_number=3, at=at(fake, -1)))

    [raised] = fake.last.of_type(AlertRaisedV1)  # sent again, not swallowed by the open one
    assert raised.alert_id != first_alert and raised.linked_alert_ids == [first_alert]
    assert sorted(second.submission.alert_ids) == sorted([first_alert, raised.alert_id])
    [score] = fake.last.of_type(ScoreSubmittedV1)
    assert sorted(score.alert_ids) == sorted([first_alert, raised.alert_id])
    # The second submission joins the first (still open) alert too.
    assert [(x["alert_id"], x["submission_id"]) for x in fake.tables.alert_links] == [
        (first_alert, second.submission.submission_id)]
    assert [a["status"] for a in fake.tables.alerts.values()] == ["open", "open"]


# ---- resolutions ----------------------------------------------------------------------------

async def alerted(fake: FakeOutcomes):
    data = await opened(fake)
    accepted = await fake.handle(submission(data, phq9(12, item9=2), at=at(fake, -1)))
    [alert_id] = accepted.submission.alert_ids
    return data, alert_id


def resolution(alert_id, by: str = CLINICIAN, **body) -> RecordResolution:
    return RecordResolution(alert_id=alert_id, actor=Actor(by, frozenset({"clinician"})),
                            resolution=ResolveAlert(**{"action": "safety_plan", **body}))


async def test_a_resolution_is_recorded_announced_and_answered_again_for_a_retry() -> None:
    fake = FakeOutcomes()
    data, alert_id = await alerted(fake)
    row, replayed = await fake.handle(resolution(alert_id, action="other", action_text=" called the crisis team "))
    assert not replayed and (row["status"], row["resolved_by"], row["action_text"]) == (
        "resolved", CLINICIAN, "called the crisis team")
    [resolved] = fake.last.emitted
    assert isinstance(resolved, AlertResolvedV1)
    assert (resolved.alert_id, resolved.resolved_by, resolved.action.value, resolved.organisation_id) == (
        alert_id, CLINICIAN, "other", ORG)
    assert [a["action"] for a in fake.tables.alert_audit] == ["raised", "resolved"]

    row, replayed = await fake.handle(resolution(alert_id, action="other", action_text="called the crisis team"))
    assert replayed and fake.last.emitted == []


async def test_resolution_refusals_write_nothing() -> None:
    fake = FakeOutcomes()
    data, alert_id = await alerted(fake)
    audit = len(fake.tables.alert_audit)

    with pytest.raises(Unknown) as unknown:
        await fake.handle(resolution(uuid.uuid4()))
    assert (unknown.value.field, status_for(unknown.value)) == ("alert_id", 404)
    with pytest.raises(Refused) as text:
        await fake.handle(resolution(alert_id, action="other"))
    assert (text.value.field, status_for(text.value)) == ("action_text", 422)
    with pytest.raises(Refused) as early:
        await fake.handle(resolution(alert_id, resolved_at=at(fake, -24 * 30)))
    assert early.value.field == "resolved_at"
    assert fake.tables.alerts[alert_id]["status"] == "open" and len(fake.tables.alert_audit) == audit

    await fake.handle(resolution(alert_id))
    with pytest.raises(AlreadyResolved) as again:  # resolved differently before
        await fake.handle(resolution(alert_id, by="clin-2"))
    assert (again.value.field, again.value.reason, status_for(again.value)) == (
        "alert_id", "is already resolved", 409)
    assert fake.tables.alerts[alert_id]["resolved_by"] == CLINICIAN


# ---- course events --------------------------------------------------------------------------

def planned(data: IntakeCompletedV1, course_id, now: datetime, contracted: int = 12) -> CoursePlannedV1:
    return CoursePlannedV1(episode_id=data.episode_id, course_id=course_id, person_id=data.person_id,
                           template_id=data.template_id, clinician_id=CLINICIAN, contracted_sessions=contracted,
                           phase_plan=[{"phase": "initial", "first_session": 1, "last_session": 3},
                                       {"phase": "middle", "first_session": 4, "last_session": contracted}],
                           sessions=[], first_session_at=now, planned_end_at=now + timedelta(weeks=12),
                           planned_at=now)


def attended(data: IntakeCompletedV1, course_id, number: int, now: datetime, contracted: int = 12) -> SessionAttendedV1:
    return SessionAttendedV1(episode_id=data.episode_id, course_id=course_id, session_id=uuid.uuid4(), number=number,
                             attended_sessions=number, contracted_sessions=contracted,
                             phase="initial" if number <= 3 else "middle", attended_at=now)


async def test_course_ended_evaluates_the_course_and_announces_it() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    course_id = uuid.uuid4()
    await fake.deliver(planned(data, course_id, at(fake)))
    for n in range(1, 6):
        await fake.deliver(attended(data, course_id, n, at(fake)))
    await fake.handle(submission(data, phq9(6), timepoint="end", at=at(fake, -1)))
    fake.clock.advance(timedelta(hours=1))
    await fake.deliver(CourseEndedV1(episode_id=data.episode_id, course_id=course_id, template_id=data.template_id,
                                     clinician_id=CLINICIAN, reason="completed", final_phase="completed",
                                     attended_sessions=5, contracted_sessions=12, ended_at=at(fake, -0.5)))

    [ev] = fake.last.of_type(OutcomeEvaluatedV1)
    assert (ev.course_id, ev.attended_sessions, ev.treatment_sessions, ev.finished_course, ev.revision) == (
        course_id, 5, 2, True, 1)  # sessions 1-3 were the assessment phase
    assert (ev.caseness_at_baseline, ev.caseness_at_end, ev.recovery, ev.reliable_improvement) == (
        True, False, True, True)
    assert (ev.baseline_totals["phq9"], ev.final_totals["phq9"], ev.organisation_id) == (18.0, 6.0, ORG)
    stored = fake.tables.evaluations[data.episode_id]
    assert (stored["revision"], str(stored["event_id"])) == (1, fake.last.events[0].id)

    # The course event again (a replay): evaluated once.
    await fake.deliver(CourseEndedV1(episode_id=data.episode_id, course_id=course_id, template_id=data.template_id,
                                     clinician_id=CLINICIAN, reason="completed", final_phase="completed",
                                     attended_sessions=5, contracted_sessions=12, ended_at=at(fake, -0.5)))
    assert fake.last.emitted == []


async def test_a_late_score_given_before_the_end_revises_the_evaluation() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    course_id = uuid.uuid4()
    ended_at = at(fake, -1)
    await fake.deliver(CourseEndedV1(episode_id=data.episode_id, course_id=course_id, template_id=data.template_id,
                                     clinician_id=CLINICIAN, reason="completed", final_phase="completed",
                                     attended_sessions=12, contracted_sessions=12, ended_at=ended_at))
    [first] = fake.last.of_type(OutcomeEvaluatedV1)
    assert first.recovery is False and first.revision == 1

    await fake.handle(submission(data, phq9(5), at=ended_at - timedelta(minutes=30)))
    [revised] = fake.last.of_type(OutcomeEvaluatedV1)
    assert (revised.revision, revised.recovery, revised.final_totals["phq9"]) == (2, True, 5.0)
    assert fake.tables.evaluations[data.episode_id]["revision"] == 2


async def test_no_reliable_improvement_at_the_review_session_raises_a_review_alert_once() -> None:
    fake = FakeOutcomes()
    data = await opened(fake)
    course_id = uuid.uuid4()
    await fake.deliver(planned(data, course_id, at(fake)))
    await fake.handle(submission(data, phq9(17), at=at(fake, -1)))  # no reliable change from 18
    for n in range(1, 6):
        await fake.deliver(attended(data, course_id, n, at(fake)))
    review_event = await fake.deliver(attended(data, course_id, 6, at(fake)))  # half of 12

    [raised] = fake.last.of_type(AlertRaisedV1)
    assert (raised.kind, raised.reason_code, raised.session_number) == (
        AlertKind.review, "no_reliable_improvement", 6)
    assert raised.alert_id == uuid.uuid5(uuid.UUID(review_event.id), "review-alert")
    assert fake.tables.courses[data.episode_id]["review_alert_id"] == raised.alert_id
    await fake.deliver(attended(data, course_id, 7, at(fake)))
    assert fake.last.emitted == []
