"""Issue 15 item 1, outcomes' side: the episode and cohort outputs say which instruments the
measurement schedule (domain.md 3.4) expected and which are missing — the pure record per
programme, then through the handlers with the fake unit of work: the evaluation event, the
outcome and scores views, the cohort report, and a late score filling a gap."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from outcomes_fakes import FakeOutcomes

from rapport_outcomes.domain import cohort
from rapport_outcomes.domain.commands import Actor, SubmitQuestionnaire, SubmitScores
from rapport_outcomes.domain.fhir_record import CourseSession
from rapport_outcomes.domain.measurement import Collected, attended_numbers, measurement_record
from rapport_outcomes.service_layer import views
from rapport_outcomes.settings import OutcomesSettings
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.course import CourseEndedV1, CoursePlannedV1, SessionAttendedV1
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1
from rapport_shared.instruments import load_catalogue
from rapport_shared.programmes import RiskScreenError, packaged_schedule

pytestmark = pytest.mark.unit

SCHEDULE = packaged_schedule()


def every(n: int, *codes: str) -> list[Collected]:
    return [Collected(code, k, "session") for k in range(1, n + 1) for code in codes]


def record(condition: str | None, n: int | None, sessions, collected):
    return measurement_record(SCHEDULE, target_condition=condition, contracted_sessions=n, sessions=sessions,
                              collected=collected)


# ---- the record (pure) ------------------------------------------------------------------------

def test_an_eating_disorder_course_expects_edeq_every_4th_session_and_at_baseline_mid_and_end() -> None:
    got = [*every(8, "phq9", "gad7"), *(Collected("wsas", k, "session") for k in (1, 4, 8)),
           Collected("edeq6", None, "baseline"),  # the intake's: session 1's baseline
           *(Collected("edeq6", k, "session") for k in (4, 8))]
    r = record("eating_disorder", 8, range(1, 9), got)
    assert {code: (m.expected, m.received, m.missing_sessions) for code, m in r.instruments.items()} == {
        "phq9": (8, 8, []), "gad7": (8, 8, []), "wsas": (3, 3, []), "edeq6": (3, 3, [])}
    assert (r.missing, r.sessions, r.contracted_sessions) == ([], list(range(1, 9)), 8)


def test_what_is_missing_is_named_with_its_sessions() -> None:
    got = [*every(8, "phq9"), *(Collected("gad7", k, "session") for k in (1, 2, 3, 5, 6, 7, 8)),
           Collected("wsas", 1, "session"), Collected("wsas", 8, "session")]
    r = record("substance_use", 8, range(1, 9), got)
    assert r.instruments["gad7"].missing_sessions == [4] and r.instruments["wsas"].missing_sessions == [4]
    assert r.instruments["audit"].model_dump() == {"expected": 2, "received": 0, "missing_sessions": [1, 8]}
    assert r.missing == ["gad7", "wsas", "audit"]  # the schedule's order
    assert r.instruments["phq9"].model_dump() == {"expected": 8, "received": 8, "missing_sessions": []}


def test_only_attended_sessions_expect_something_and_a_score_counts_only_for_its_session() -> None:
    # Session 3 missed: nothing expected of it; the PHQ-9 given for it does not fill session 4.
    got = [Collected("phq9", k, "session") for k in (1, 2, 3)] + [Collected("gad7", k, "session") for k in (1, 2, 4)]
    r = record("anxiety", 12, [1, 2, 4], got)
    assert r.instruments["phq9"].model_dump() == {"expected": 3, "received": 2, "missing_sessions": [4]}
    assert r.instruments["gad7"].missing_sessions == [] and r.sessions == [1, 2, 4]
    assert r.instruments["wsas"].missing_sessions == [1]  # mid is 6 and the end 12: not attended yet


def test_unnumbered_scores_count_as_the_baseline_or_the_end_only() -> None:
    got = [Collected("audit", None, "baseline"), Collected("audit", None, "end"), Collected("phq9", None, "session"),
           Collected("phq9", None, "baseline")]
    r = record("substance_use", 8, range(1, 9), got)
    assert r.instruments["audit"].model_dump() == {"expected": 2, "received": 2, "missing_sessions": []}
    # PHQ-9 is asked before every session (the risk screen), not only as a baseline: unnumbered fills none.
    assert r.instruments["phq9"].received == 0


def test_depression_never_expects_the_optional_clinician_rated_hamd17() -> None:
    r = record("depression", 8, range(1, 9), [])
    assert list(r.instruments) == ["phq9", "gad7", "wsas"] and "hamd17" not in r.missing
    assert r.instruments["wsas"].expected == 3


def test_without_a_contract_no_mid_course_or_end_is_placed() -> None:
    r = record(None, None, [1, 2, 3], [])
    assert {c: m.expected for c, m in r.instruments.items()} == {"phq9": 3, "gad7": 3, "wsas": 1}
    assert record("depression", 8, [], []).instruments == {}


def test_attended_numbers_skip_other_statuses_and_the_optional_parent_session() -> None:
    def s(number: int, status: str, parent: bool = False) -> CourseSession:
        return CourseSession(uuid.uuid4(), number, None, None, None, status, None, None, parent)

    assert attended_numbers([s(1, "attended"), s(2, "missed"), s(3, "attended"), s(3, "attended", True),
                             s(4, "booked")]) == [1, 3]
    assert attended_numbers([], 3) == [1, 2, 3] and attended_numbers([], None) == []


def test_a_clinic_override_adds_to_what_is_expected(tmp_path) -> None:
    extra = tmp_path / "overrides.yaml"
    extra.write_text("add:\n  anxiety:\n    - instrument: hamd17\n      at: [baseline, end]\n")
    policy = OutcomesSettings(measurement_overrides=str(extra)).policy()
    r = measurement_record(policy.schedule, target_condition="anxiety", contracted_sessions=8, sessions=[1, 8],
                           collected=[])
    assert r.instruments["hamd17"].missing_sessions == [1, 8]
    bad = tmp_path / "bad.yaml"
    bad.write_text("remove:\n  all: [phq9]\n")
    with pytest.raises(ValueError, match="RAPPORT_MEASUREMENT_OVERRIDES refused"):
        OutcomesSettings(measurement_overrides=str(bad))
    assert issubclass(RiskScreenError, ValueError)


# ---- through the handlers -----------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def answers(code: str, value: int) -> dict[str, int]:
    d = load_catalogue().get(code)
    out = {str(i.number): min(max(value, i.lowest), i.highest) if i.allowed is None else
           max(v for v in i.allowed if v <= max(value, i.allowed[0])) for i in d.items}
    return {**out, "9": 0} if code == "phq9" else out


class Course:
    """An 8-session eating-disorder course driven through the fake service."""

    def __init__(self, fake: FakeOutcomes) -> None:
        self.fake = fake
        self.course_id = uuid.uuid4()
        referred = fake.clock.now() - timedelta(days=1)
        self.data = IntakeCompletedV1(
            episode_id=uuid.uuid4(), person_id=f"P-{uuid.uuid4().hex[:10]}", target_condition="eating_disorder",
            template_id="ipt-brief", focus={"primary": "role_dispute"}, clinician_id="clin-1",
            availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
            baseline_scores=[{"instrument": c, "answers": answers(c, 2), "total": 0.0,
                              "administered_at": referred + timedelta(hours=1)} for c in ("phq9", "gad7", "edeq6")],
            referred_at=referred, completed_at=referred + timedelta(hours=2), organisation_id="org-test")

    async def start(self) -> None:
        await self.fake.deliver(self.data)
        now = self.fake.clock.now()
        await self.fake.deliver(CoursePlannedV1(
            episode_id=self.data.episode_id, course_id=self.course_id, person_id=self.data.person_id,
            template_id="ipt-brief", clinician_id="clin-1", contracted_sessions=8,
            phase_plan=[{"phase": "initial", "first_session": 1, "last_session": 2},
                        {"phase": "middle", "first_session": 3, "last_session": 6},
                        {"phase": "termination", "first_session": 7, "last_session": 8}],
            sessions=[], first_session_at=now, planned_end_at=now + timedelta(weeks=8), planned_at=now))

    async def submit(self, code: str, number: int | None, **over):
        self.fake.clock.advance(timedelta(minutes=1))
        return await self.fake.handle(SubmitQuestionnaire(
            episode_id=self.data.episode_id, actor=Actor(self.data.person_id, frozenset({"patient_app"})),
            scores=SubmitScores(client_submission_id=f"app-{uuid.uuid4().hex}", instrument=code,
                                answers=answers(code, 2), administered_at=self.fake.clock.now(),
                                session_number=number, **over)))

    async def session(self, number: int, skip: tuple[str, ...] = ()) -> None:
        for code in SCHEDULE.questionnaire("eating_disorder", number, 8):
            if code not in skip and not (number == 1 and code == "edeq6"):  # the intake's EDE-Q is the baseline
                await self.submit(code, number)
        self.fake.clock.advance(timedelta(hours=1))
        await self.fake.deliver(SessionAttendedV1(
            episode_id=self.data.episode_id, course_id=self.course_id, session_id=uuid.uuid4(), number=number,
            attended_sessions=number, contracted_sessions=8, phase="initial" if number <= 2 else "middle",
            attended_at=self.fake.clock.now()))
        self.fake.clock.advance(timedelta(days=7))

    async def end(self) -> None:
        await self.fake.deliver(CourseEndedV1(
            episode_id=self.data.episode_id, course_id=self.course_id, template_id="ipt-brief", clinician_id="clin-1",
            reason="completed", final_phase="completed", attended_sessions=8, contracted_sessions=8,
            ended_at=self.fake.clock.now() - timedelta(days=6)))


async def test_the_evaluation_event_and_the_views_name_what_was_expected_and_what_is_missing() -> None:
    fake = FakeOutcomes(now=T0)
    course = Course(fake)
    await course.start()
    for n in range(1, 4):
        await course.session(n)
    # During the course: the scores view says what was expected of the sessions attended so far.
    live = (await views.scores(fake.unit(), course.data.episode_id))["measurement"]
    assert (live["sessions"], live["missing"]) == ([1, 2, 3], [])
    assert live["instruments"]["edeq6"] == {"expected": 1, "received": 1, "missing_sessions": []}

    await course.session(4, skip=("wsas",))  # the mid-course WSAS not given
    for n in range(5, 9):
        await course.session(n)
    await course.end()

    [ev] = fake.of_type(OutcomeEvaluatedV1)
    m = ev.measurement
    assert m is not None and (m.contracted_sessions, m.sessions, m.missing) == (8, list(range(1, 9)), ["wsas"])
    assert {c: (x.expected, x.received, x.missing_sessions) for c, x in m.instruments.items()} == {
        "phq9": (8, 8, []), "gad7": (8, 8, []), "wsas": (3, 2, [4]), "edeq6": (3, 3, [])}
    OutcomeEvaluatedV1.model_validate(json.loads(ev.model_dump_json()))  # as a consumer reads it

    outcome = await views.outcome(fake.unit(), course.data.episode_id)
    assert outcome["measurement"] == m.model_dump(mode="json")
    assert outcome["condition_measures"]["edeq6"]["reliable_change_criterion"] == "none"

    report = await views.cohort_report(fake.unit(), group_by="template", template_id=None, clinician_id=None,
                                       ended_from=None, ended_to=None, scope=None)
    assert report["total"]["measurement"] == {"episodes": 1, "instruments": {
        "edeq6": {"expected": 3, "received": 3, "missing": 0, "episodes_missing": 0, "rate": 1.0},
        "gad7": {"expected": 8, "received": 8, "missing": 0, "episodes_missing": 0, "rate": 1.0},
        "phq9": {"expected": 8, "received": 8, "missing": 0, "episodes_missing": 0, "rate": 1.0},
        "wsas": {"expected": 3, "received": 2, "missing": 1, "episodes_missing": 1, "rate": 0.6667}}}
    assert report["groups"][0]["measurement"] == report["total"]["measurement"]


async def test_a_late_score_that_fills_a_gap_updates_the_record_without_a_revision() -> None:
    fake = FakeOutcomes(now=T0)
    course = Course(fake)
    await course.start()
    for n in range(1, 9):
        await course.session(n, skip=("wsas",) if n == 4 else ())
    await course.end()
    assert (await views.outcome(fake.unit(), course.data.episode_id))["measurement"]["missing"] == ["wsas"]

    # The mid-course WSAS, given before the end, recorded after the evaluation: same result, no new event.
    fake.clock.advance(timedelta(minutes=1))
    before = fake.clock.now() - timedelta(weeks=4, days=6)  # around session 4, before the later WSAS
    await fake.handle(SubmitQuestionnaire(
        episode_id=course.data.episode_id, actor=Actor(course.data.person_id, frozenset({"patient_app"})),
        scores=SubmitScores(client_submission_id="late-wsas", instrument="wsas", answers=answers("wsas", 2),
                            administered_at=before, session_number=4)))
    assert len(fake.of_type(OutcomeEvaluatedV1)) == 1
    outcome = await views.outcome(fake.unit(), course.data.episode_id)
    assert outcome["revision"] == 1 and outcome["measurement"]["missing"] == []
    assert outcome["measurement"]["instruments"]["wsas"] == {"expected": 3, "received": 3, "missing_sessions": []}


async def test_an_evaluation_stored_before_the_record_gets_it_from_what_is_stored() -> None:
    fake = FakeOutcomes(now=T0)
    course = Course(fake)
    await course.start()
    for n in range(1, 9):
        await course.session(n)
    await course.end()
    row = fake.tables.evaluations[course.data.episode_id]
    row["detail"] = json.dumps({k: v for k, v in json.loads(row["detail"]).items() if k != "measurement"})
    outcome = await views.outcome(fake.unit(), course.data.episode_id)
    assert outcome["measurement"]["missing"] == [] and outcome["measurement"]["sessions"] == list(range(1, 9))
    report = await views.cohort_report(fake.unit(), group_by="template", template_id=None, clinician_id=None,
                                       ended_from=None, ended_to=None, scope=None)
    assert "measurement" not in report["total"]  # the cohort counts only what evaluations recorded


def test_the_cohort_sums_expected_and_received_over_every_ended_course() -> None:
    def row(finished: bool, measurement) -> cohort.EvaluationRow:
        return cohort.EvaluationRow("t", "c", finished, True, True, True, True, False, True, True,
                                    measurement=measurement)

    full = {"instruments": {"phq9": {"expected": 8, "received": 8, "missing_sessions": []}}}
    gaps = {"instruments": {"phq9": {"expected": 2, "received": 1, "missing_sessions": [2]},
                            "audit": {"expected": 1, "received": 0, "missing_sessions": [1]}}}
    s = cohort.summarise([row(True, full), row(False, gaps), row(True, None)])
    assert s["measurement"] == {"episodes": 2, "instruments": {
        "audit": {"expected": 1, "received": 0, "missing": 1, "episodes_missing": 1, "rate": 0.0},
        "phq9": {"expected": 10, "received": 9, "missing": 1, "episodes_missing": 1, "rate": 0.9}}}
    assert "measurement" not in cohort.summarise([row(True, None)])
