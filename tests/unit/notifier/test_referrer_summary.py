"""The end-of-course summary for the referrer (issue 15 item 5; domain.md 4) on a fake unit of work:
sent with the consent given at intake to the episode's organisation's webhook subscriptions, once
per episode from the first evaluation only; without consent nothing leaves, not even the partners'
ordinary rapport.outcome.evaluated.v1 webhooks; without a referrer channel a ``skipped`` delivery
(``no_referrer_channel``) says why."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from rapport_notifier.domain import commands, referrer, rules
from rapport_shared.contracts import NotificationFailedV1
from rapport_shared.contracts.course import CourseEndedV1
from rapport_shared.contracts.intake import IntakeCompletedV1
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1

from .fakes import FakeNotifierUnitOfWork

pytestmark = pytest.mark.unit

ORG = "org-partner"
EVALUATED = "rapport.outcome.evaluated.v1"
SUMMARY_KEYS = {"episode_id", "person_id", "organisation_id", "course_id", "revision", "finished_course",
                "caseness_at_baseline", "caseness_at_end", "recovery", "reliable_improvement",
                "reliable_deterioration", "reliable_recovery", "response", "remission", "end_reason",
                "attended_sessions", "treatment_sessions", "course_ended_at", "evaluated_at", "measures",
                "condition_measures"}


@pytest.fixture
def uow() -> FakeNotifierUnitOfWork:
    u = FakeNotifierUnitOfWork()
    u.patients.add("P-ref1", email="ref1@patients.test", phone="+447700900123", consent={"email": True})
    return u


async def intake(uow, *, consent: bool, org: str | None = ORG, source: str = "partner-clinic",
                 person: str = "P-ref1") -> uuid.UUID:
    episode = uuid.uuid4()
    at = uow.now() - timedelta(days=90)
    await uow.handle(IntakeCompletedV1(
        episode_id=episode, person_id=person, target_condition="eating_disorder", template_id="ipt-standard",
        focus={"primary": "grief"}, clinician_id="clin-ref", referral_source=source,
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=at, completed_at=at + timedelta(hours=1), organisation_id=org,
        share_outcomes_with_referrer=consent), at=at)
    return episode


async def subscribe(uow, event_types=(EVALUATED,), org: str = ORG) -> uuid.UUID:
    row, _ = await uow.command(commands.Subscribe(partner_id="partner-1", org=org, url="https://partner.example/hook",
                                                  event_types=tuple(event_types)))
    return row["subscription_id"]


def evaluated(episode: uuid.UUID, uow, *, revision: int = 1, org: str | None = ORG) -> OutcomeEvaluatedV1:
    sub = uuid.uuid4()
    return OutcomeEvaluatedV1(
        episode_id=episode, organisation_id=org, course_id=uuid.uuid4(), finished_course=True,
        caseness_at_baseline=True, caseness_at_end=False, recovery=True, reliable_improvement=True,
        reliable_deterioration=False, reliable_recovery=True, response=True, remission=True,
        baseline_totals={"phq9": 18, "gad7": 12}, final_totals={"phq9": 4 + revision, "gad7": 5},
        evaluated_at=uow.now(), clinician_id="clin-ref", end_reason="completed", attended_sessions=16,
        treatment_sessions=13, counts_toward_recovery=True, paired_measures=["phq9", "gad7"],
        instruments={"phq9": {"baseline_total": 18, "final_total": 4 + revision, "change": -14 + revision,
                              "reliable_change": "improved", "caseness_at_baseline": True, "caseness_at_end": False,
                              "baseline_submission_id": sub, "final_submission_id": uuid.uuid4(),
                              "reliable_change_criterion": "threshold", "reliable_change_threshold": 6},
                     "gad7": {"baseline_total": 12, "final_total": 5, "change": -7, "reliable_change": "improved",
                              "caseness_at_baseline": True, "caseness_at_end": False,
                              "baseline_submission_id": sub, "final_submission_id": uuid.uuid4()}},
        condition_measures={"edeq6": {"status": "paired", "reliable_change_criterion": "none",
                                      "baseline_total": 4.5, "final_total": 1.0, "change": -3.5,
                                      "baseline_submission_id": uuid.uuid4(), "final_submission_id": uuid.uuid4()}},
        revision=revision)


async def test_with_consent_each_endpoint_of_the_partner_organisation_gets_the_summary(uow):
    episode = await intake(uow, consent=True)
    hooks = [await subscribe(uow), await subscribe(uow, ("rapport.course.planned.v1",))]
    await subscribe(uow, org="org-other")  # another organisation's endpoint: never
    ended_at = uow.now() - timedelta(hours=2)
    await uow.handle(CourseEndedV1(episode_id=episode, course_id=uuid.uuid4(), template_id="ipt-standard",
                                   clinician_id="clin-ref", reason="completed", final_phase="completed",
                                   attended_sessions=16, contracted_sessions=16, ended_at=ended_at,
                                   organisation_id=ORG), at=ended_at)
    data = evaluated(episode, uow)
    event = await uow.handle(data)

    sent = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert sorted(r["recipient_ref"] for r in sent) == sorted(f"partner:{s}" for s in hooks)
    assert {(r["channel"], r["status"], r["language"]) for r in sent} == {("webhook", "ready", "none")}
    assert {r["idem_key"] for r in sent} == {f"episode:{episode}/partner:{s}/webhook/referrer_summary" for s in hooks}
    assert all(r["cause_event_id"] == uuid.UUID(event.id) for r in sent)
    body = json.loads(sent[0]["params"]["body"])
    assert sent[0]["params"]["body"] == sent[1]["params"]["body"]  # one summary, the same id at every endpoint
    assert (body["type"], body["source"], body["subject"], body["id"]) == (
        "rapport.referrer.summary.v1", "/rapport/notifier", str(episode), referrer.summary_id(episode))
    s = body["data"]
    assert set(s) == SUMMARY_KEYS
    assert (s["episode_id"], s["person_id"], s["organisation_id"], s["revision"]) == (str(episode), "P-ref1", ORG, 1)
    assert (s["recovery"], s["reliable_improvement"], s["reliable_deterioration"], s["finished_course"]) == (
        True, True, False, True)
    assert (s["attended_sessions"], s["treatment_sessions"], s["end_reason"]) == (16, 13, "completed")
    assert s["course_ended_at"] == ended_at.isoformat().replace("+00:00", "Z")
    assert s["measures"]["phq9"] == {"baseline_total": 18, "final_total": 5, "change": -13,
                                     "reliable_change": "improved", "caseness_at_baseline": True,
                                     "caseness_at_end": False}
    assert s["condition_measures"]["edeq6"]["status"] == "paired"
    assert s["condition_measures"]["edeq6"]["reliable_change"] is None  # "none" criterion: never guessed
    # Pseudonymous ids, codes and numbers only: no contact detail, no submission ids, no clinician.
    text = sent[0]["params"]["body"]
    submissions = [str(m.baseline_submission_id) for m in data.instruments.values()]
    for leak in ("ref1@patients.test", "+447700900123", "clin-ref", "submission", *submissions):
        assert leak not in text
    # With consent the partner's ordinary subscription to the evaluation is pushed too.
    [push] = uow.deliveries.of(rules.PARTNER_EVENT)
    assert push["recipient_ref"] == f"partner:{hooks[0]}"
    # The clinician's summary is as before.
    assert uow.deliveries.of(rules.COURSE_SUMMARY, recipient_ref="clinician:clin-ref")


async def test_the_course_end_comes_with_the_evaluation_when_its_own_event_is_not_read_yet(uow):
    """rapport.course and rapport.outcomes are read side by side, in no order between them: the
    evaluation carries the course's end, so the summary has it whichever topic came first."""
    episode = await intake(uow, consent=True)
    await subscribe(uow)
    ended_at = uow.now() - timedelta(hours=3)
    await uow.handle(evaluated(episode, uow).model_copy(update={"course_ended_at": ended_at}))
    [sent] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert json.loads(sent["params"]["body"])["data"]["course_ended_at"] == ended_at.isoformat().replace("+00:00", "Z")


async def test_without_consent_nothing_leaves_for_the_organisation(uow):
    episode = await intake(uow, consent=False)
    await subscribe(uow)
    await uow.handle(evaluated(episode, uow))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == []
    assert uow.deliveries.of(rules.PARTNER_EVENT) == []  # the ordinary outcome webhook respects it too
    assert uow.deliveries.of(rules.COURSE_SUMMARY)  # the clinician still gets theirs
    # An episode the notifier never saw an intake for: no consent known, nothing sent.
    await uow.handle(evaluated(uuid.uuid4(), uow))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == [] and uow.deliveries.of(rules.PARTNER_EVENT) == []


async def test_a_revision_never_sends_a_second_summary(uow):
    episode = await intake(uow, consent=True)
    hook = await subscribe(uow)
    await uow.handle(evaluated(episode, uow))
    [first] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    uow.clock.advance(timedelta(days=2))
    await uow.handle(evaluated(episode, uow, revision=2))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == [first]
    # the revision itself still reaches the partner's subscription to evaluations (with consent)
    assert len(uow.deliveries.of(rules.PARTNER_EVENT, recipient_ref=f"partner:{hook}")) == 2
    # A first evaluation arriving again under another event id (a re-evaluation) is the same key.
    await uow.handle(evaluated(episode, uow))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == [first]


async def test_no_partner_organisation_endpoint_records_a_skipped_delivery(uow):
    episode = await intake(uow, consent=True, source="gp")
    await subscribe(uow, org="org-other")
    event = await uow.handle(evaluated(episode, uow))
    [skipped] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert (skipped["recipient_ref"], skipped["channel"], skipped["status"], skipped["last_error"]) == (
        "referrer:unknown", "none", "skipped", "no_referrer_channel")
    assert skipped["idem_key"] == f"episode:{episode}/referrer:unknown/none/referrer_summary"
    assert skipped["cause_event_id"] == uuid.UUID(event.id) and skipped["finished_at"] == uow.now()
    assert uow.of_type(NotificationFailedV1) == [] and uow.emitted == []  # nothing attempted, nothing emitted
    # processed again (a redelivery), and a revision: still the one row
    await uow.handle(evaluated(episode, uow), event_id=event.id)
    await uow.handle(evaluated(episode, uow, revision=2))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == [skipped]


async def test_a_revision_after_a_skipped_summary_does_not_send_one_to_a_new_endpoint(uow):
    episode = await intake(uow, consent=True)
    await uow.handle(evaluated(episode, uow))
    [skipped] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    uow.clock.advance(timedelta(days=1))
    await subscribe(uow)
    uow.clock.advance(timedelta(days=1))
    await uow.handle(evaluated(episode, uow, revision=2))
    assert uow.deliveries.of(rules.REFERRER_SUMMARY) == [skipped]  # the first evaluation only


async def test_a_self_referral_has_no_referrer_to_tell(uow):
    episode = await intake(uow, consent=True, source="self")
    await subscribe(uow)
    await uow.handle(evaluated(episode, uow))
    [skipped] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert (skipped["status"], skipped["last_error"]) == ("skipped", "no_referrer_channel")
    # the organisation is not the referrer: its subscription to evaluations is not pushed either
    assert uow.deliveries.of(rules.PARTNER_EVENT) == []


async def test_an_episode_of_no_organisation_is_skipped(uow):
    episode = await intake(uow, consent=True, org=None)
    await subscribe(uow)
    await uow.handle(evaluated(episode, uow, org=None))
    [skipped] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert skipped["status"] == "skipped"


async def test_an_endpoint_created_after_the_evaluation_gets_nothing_when_it_is_processed_again(uow):
    """Replay safety, as for partner events: the endpoints are those that existed at the event's time."""
    episode = await intake(uow, consent=True)
    data = evaluated(episode, uow)
    at = uow.now()
    uow.clock.advance(timedelta(hours=1))
    await subscribe(uow)
    await uow.handle(data, at=at)
    [skipped] = uow.deliveries.of(rules.REFERRER_SUMMARY)
    assert skipped["status"] == "skipped"


def test_an_older_producers_evaluation_gives_its_totals():
    from datetime import datetime, timezone

    data = OutcomeEvaluatedV1(episode_id=uuid.uuid4(), finished_course=False, baseline_totals={"phq9": 18},
                              final_totals={}, evaluated_at=datetime(2031, 1, 1, tzinfo=timezone.utc))
    s = referrer.summary(data, person_id=None, organisation_id="org-x", ended_at=None)
    assert s.measures == {"phq9": referrer.Measure(baseline_total=18)}
    assert s.condition_measures == {} and s.course_ended_at is None and s.revision == 1
    assert json.loads(referrer.body(s))["time"] == "2031-01-01T00:00:00Z"
