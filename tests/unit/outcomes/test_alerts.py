"""Safety and review alert rules (domain.md 3.3), pure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_outcomes.domain import alerts as rules
from rapport_outcomes.domain.alerts import AlreadyResolved, Link, OpenAlert, Raise
from rapport_outcomes.domain.model import Baseline, Refused, score_submission
from rapport_outcomes.domain.policy import OutcomesPolicy
from rapport_shared.contracts.outcomes import AlertAction, AlertKind, AlertUrgency, Timepoint
from rapport_shared.http.errors import status_for

pytestmark = pytest.mark.unit

POLICY = OutcomesPolicy()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SAFETY = ("safety", "safety_item_positive")
DETERIORATION = ("review", "reliable_deterioration")


def submission(instrument: str, total: int, item9: int = 0, baseline: int | None = None):
    n = 9 if instrument == "phq9" else 7
    answers, rest = {}, total - item9
    for i in range(1, n + (0 if instrument == "phq9" else 1)):
        answers[i] = min(3, rest)
        rest -= answers[i]
    if instrument == "phq9":
        answers[9] = item9
    return score_submission(
        policy=POLICY, submission_id=uuid.uuid4(), episode_id=uuid.uuid4(), instrument=instrument, answers=answers,
        administered_at=T0, timepoint=Timepoint.session if baseline is not None else Timepoint.baseline,
        session_number=3, baseline=Baseline(uuid.uuid4(), baseline, T0) if baseline is not None else None, scored_at=T0,
    )


def causes(decisions) -> list[tuple[str, str, str]]:
    return [("raise" if isinstance(d, Raise) else "link", d.kind.value, d.reason_code) for d in decisions]


@pytest.mark.parametrize(
    ("instrument", "total", "item9", "baseline", "expected"),
    [
        # item 9 > 0 raises a safety alert regardless of the total
        ("phq9", 0, 0, None, []),
        ("phq9", 1, 1, None, [("raise", *SAFETY)]),
        ("phq9", 3, 3, None, [("raise", *SAFETY)]),
        ("phq9", 27, 3, None, [("raise", *SAFETY)]),
        ("phq9", 26, 2, 10, [("raise", *SAFETY), ("raise", *DETERIORATION)]),
        # reliable deterioration: exactly at the threshold and one below
        ("phq9", 16, 0, 10, [("raise", *DETERIORATION)]),
        ("phq9", 15, 0, 10, []),
        ("gad7", 12, 0, 8, [("raise", *DETERIORATION)]),
        ("gad7", 11, 0, 8, []),
        # reliable improvement raises nothing
        ("phq9", 4, 0, 18, []),
    ],
)
def test_alerts_for_a_submission(instrument, total, item9, baseline, expected) -> None:
    s = submission(instrument, total, item9, baseline)
    assert causes(rules.alerts_for_submission(s, [], POLICY)) == expected


def test_safety_alerts_are_urgent_and_review_alerts_routine() -> None:
    decisions = rules.alerts_for_submission(submission("phq9", 26, 2, 10), [], POLICY)
    assert [(d.kind, d.urgency) for d in decisions] == [(AlertKind.safety, AlertUrgency.urgent),
                                                         (AlertKind.review, AlertUrgency.routine)]
    assert all(d.instrument == "phq9" and d.session_number == 3 for d in decisions)


def test_a_second_positive_item9_is_a_new_alert_linked_to_the_open_one() -> None:
    """domain.md 3.3: "already alerted" is never a reason to stay silent; the repeat is raised (and
    so sent) like the first, names the open alert, and the submission joins that alert too."""
    open_safety = OpenAlert(uuid.uuid4(), AlertKind.safety, "safety_item_positive")
    raised, link = rules.alerts_for_submission(submission("phq9", 5, 1, 18), [open_safety], POLICY)
    assert raised == Raise(AlertKind.safety, AlertUrgency.urgent, "safety_item_positive", "phq9", 3,
                           (open_safety.alert_id,))
    assert link == Link(open_safety.alert_id, AlertKind.safety, "safety_item_positive")


def test_a_third_positive_item9_links_to_every_open_safety_alert_oldest_first() -> None:
    first, second = (OpenAlert(uuid.uuid4(), AlertKind.safety, "safety_item_positive") for _ in range(2))
    review = OpenAlert(uuid.uuid4(), AlertKind.review, "reliable_deterioration")
    decisions = rules.alerts_for_submission(submission("phq9", 3, 3), [first, review, second], POLICY)
    assert causes(decisions) == [("raise", *SAFETY), ("link", *SAFETY), ("link", *SAFETY)]
    assert decisions[0].linked_alert_ids == (first.alert_id, second.alert_id)
    assert [d.alert_id for d in decisions[1:]] == [first.alert_id, second.alert_id]


def test_a_first_positive_item9_links_to_nothing() -> None:
    [raised] = rules.alerts_for_submission(submission("phq9", 1, 1), [], POLICY)
    assert isinstance(raised, Raise) and raised.linked_alert_ids == ()


def test_a_repeated_review_cause_still_joins_its_open_alert() -> None:
    open_review = OpenAlert(uuid.uuid4(), AlertKind.review, "reliable_deterioration")
    [decision] = rules.alerts_for_submission(submission("phq9", 16, 0, 10), [open_review], POLICY)
    assert decision == Link(open_review.alert_id, AlertKind.review, "reliable_deterioration")


def test_an_open_review_alert_does_not_absorb_a_safety_alert() -> None:
    open_review = OpenAlert(uuid.uuid4(), AlertKind.review, "reliable_deterioration")
    decisions = rules.alerts_for_submission(submission("phq9", 17, 1, 10), [open_review], POLICY)
    assert causes(decisions) == [("raise", *SAFETY), ("link", *DETERIORATION)]
    assert decisions[0].linked_alert_ids == ()


def test_a_clinic_maps_another_flag_to_a_safety_alert_by_configuration() -> None:
    policy = OutcomesPolicy(alert_flags={})
    assert rules.alerts_for_submission(submission("phq9", 1, 1), [], policy) == []


@pytest.mark.parametrize(
    ("attended", "review_session", "checked", "ended", "due"),
    [
        (7, 8, False, False, False),  # one before
        (8, 8, False, False, True),  # exactly at the review session
        (9, 8, False, False, True),  # the review session was missed: the next attended one
        (8, 8, True, False, False),  # once per course
        (8, 8, False, True, False),  # the course is over: the evaluation takes over
    ],
)
def test_review_due(attended, review_session, checked, ended, due) -> None:
    assert rules.review_due(attended_number=attended, review_session=review_session, already_checked=checked,
                            ended=ended) is due


def test_review_alert_only_when_no_improvement_is_determinable() -> None:
    raised = rules.review_alert(False, 8, [])
    assert raised == Raise(AlertKind.review, AlertUrgency.routine, "no_reliable_improvement", None, 8)
    assert rules.review_alert(True, 8, []) is None
    assert rules.review_alert(None, 8, []) is None  # nothing paired to judge by: not guessed
    open_one = OpenAlert(uuid.uuid4(), AlertKind.review, "no_reliable_improvement")
    assert rules.review_alert(False, 8, [open_one]) == Link(open_one.alert_id, AlertKind.review, "no_reliable_improvement")


NOW = T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("status", "action", "text", "resolved_at", "field"),
    [
        ("open", AlertAction.safety_plan, None, None, None),
        ("open", AlertAction.assessment, "seen in clinic", T0, None),  # exactly when raised
        ("open", AlertAction.referral, None, NOW - timedelta(hours=2), None),
        ("open", AlertAction.other, "called the crisis team", None, None),
        ("open", AlertAction.other, None, None, "action_text"),
        ("open", AlertAction.other, "   ", None, "action_text"),
        ("open", AlertAction.safety_plan, None, T0 - timedelta(seconds=1), "resolved_at"),
        ("open", AlertAction.safety_plan, None, NOW + timedelta(hours=1), "resolved_at"),
        ("resolved", AlertAction.safety_plan, None, None, "alert_id"),
    ],
)
def test_resolution(status, action, text, resolved_at, field) -> None:
    kwargs = dict(status=status, raised_at=T0, action=action, action_text=text, resolved_at=resolved_at, now=NOW,
                  policy=POLICY)
    if field is None:
        r = rules.check_resolution(**kwargs)
        assert r.action == action and r.resolved_at == (resolved_at or NOW)
    else:
        with pytest.raises(Refused) as exc:
            rules.check_resolution(**kwargs)
        assert exc.value.field == field
        assert status_for(exc.value) == (409 if isinstance(exc.value, AlreadyResolved) else 422)
