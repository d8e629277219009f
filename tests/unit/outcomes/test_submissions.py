"""Outcomes' submission rules (pure): refusals naming the field, baseline and change, timepoints.

Values are written out here (domain.md 3), not read back from the catalogue."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from rapport_outcomes.domain.model import (
    Baseline,
    Episode,
    RaterNotAllowed,
    Refused,
    check_answers,
    check_rater,
    check_time,
    decide_timepoint,
    definition_for,
    fingerprint,
    parse_answers,
    score_submission,
)
from rapport_outcomes.domain.policy import OutcomesPolicy
from rapport_shared.contracts.outcomes import ReliableChange, Timepoint
from rapport_shared.http.errors import status_for

pytestmark = pytest.mark.unit

POLICY = OutcomesPolicy()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
EPISODE = Episode(uuid.uuid4(), "P-1", "clin-1", "ipt-standard", "depression", began_at=T0)


def phq9(total: int, item9: int = 0) -> dict[int, int]:
    """A PHQ-9 with the given total (items 1–8 filled in order, item 9 as given)."""
    rest = total - item9
    answers = {}
    for n in range(1, 9):
        answers[n] = min(3, rest)
        rest -= answers[n]
    assert rest == 0
    return {**answers, 9: item9}


def gad7(total: int) -> dict[int, int]:
    answers, rest = {}, total
    for n in range(1, 8):
        answers[n] = min(3, rest)
        rest -= answers[n]
    assert rest == 0
    return answers


def scored(instrument: str, answers: dict, baseline: Baseline | None, timepoint: Timepoint = Timepoint.session):
    return score_submission(
        policy=POLICY, submission_id=uuid.uuid4(), episode_id=EPISODE.episode_id, instrument=instrument, answers=answers,
        administered_at=T0 + timedelta(days=7), timepoint=timepoint, session_number=1, baseline=baseline,
        scored_at=T0 + timedelta(days=7),
    )


# ---- refusals: each names its field ---------------------------------------------------------

@pytest.mark.parametrize(
    ("instrument", "raw", "field", "reason"),
    [
        ("phq9", {str(n): 0 for n in range(1, 9)}, "answers.item_9", "missing"),  # wrong item count (8)
        ("phq9", {**{str(n): 0 for n in range(1, 10)}, "10": 0}, "answers.item_10", "PHQ-9 has no item 10"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "9": 4}, "answers.item_9", "must be between 0 and 3, got 4"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "9": -1}, "answers.item_9", "must be between 0 and 3, got -1"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "9": True}, "answers.item_9", "must be an integer, not a boolean"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "9": 1.0}, "answers.item_9", "must be an integer, not float"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "9": "1"}, "answers.item_9", "must be an integer, not str"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "09": 0}, "answers['09']", "item key must be an integer item number"),
        ("phq9", {**{str(n): 0 for n in range(1, 9)}, "nine": 0}, "answers['nine']", "item key must be an integer item number"),
        ("gad7", {str(n): 0 for n in range(1, 7)}, "answers.item_7", "missing"),
        ("gad7", {str(n): 3 if n != 4 else 5 for n in range(1, 8)}, "answers.item_4", "must be between 0 and 3, got 5"),
        ("audit", {**{str(n): 0 for n in range(1, 10)}, "10": 3}, "answers.item_10", "must be one of 0, 2, 4, got 3"),
        ("audit", {**{str(n): 0 for n in range(1, 9)}, "9": 1, "10": 0}, "answers.item_9", "must be one of 0, 2, 4, got 1"),
        ("audit", {**{str(n): 4 for n in range(1, 9)}, "9": 4, "10": 4, "11": 0}, "answers.item_11", "AUDIT has no item 11"),
        ("wsas", {**{str(n): 8 for n in range(1, 5)}, "5": 9}, "answers.item_5", "must be between 0 and 8, got 9"),
        ("hamd17", {**{str(n): 0 for n in range(1, 18)}, "4": 3}, "answers.item_4", "must be between 0 and 2, got 3"),
    ],
)
def test_answer_refusals_name_the_item(instrument: str, raw: dict, field: str, reason: str) -> None:
    with pytest.raises(Refused) as exc:
        check_answers(POLICY, instrument, parse_answers(raw))
    assert (exc.value.field, exc.value.reason, status_for(exc.value)) == (field, reason, 422)


def test_edeq_behavioural_items_are_refused_not_ignored() -> None:
    raw = {str(n): 0 for n in [*range(1, 13), *range(19, 29)]} | {"13": 2}
    with pytest.raises(Refused) as exc:
        check_answers(POLICY, "edeq6", parse_answers(raw))
    assert exc.value.field == "answers.item_13"


@pytest.mark.parametrize("code", ["phq10", "PHQ9", "phq-9", ""])
def test_unknown_instrument_is_refused(code: str) -> None:
    with pytest.raises(Refused) as exc:
        definition_for(POLICY.catalogue, code)
    assert exc.value.field == "instrument" and status_for(exc.value) == 422


@pytest.mark.parametrize(
    ("administered_at", "baseline_at", "field"),
    [
        (T0 - timedelta(seconds=1), None, "administered_at"),  # before the episode began
        (T0, None, None),  # exactly when it began
        (T0 + timedelta(days=30), T0 + timedelta(days=1), None),
        (T0 + timedelta(hours=1), T0 + timedelta(days=1), "administered_at"),  # before the instrument's baseline
        (T0 + timedelta(days=1), T0 + timedelta(days=1), None),  # the same instant as the baseline
        (T0 + timedelta(days=40, minutes=5), None, None),  # within the allowed clock skew
        (T0 + timedelta(days=40, minutes=5, seconds=1), None, "administered_at"),  # in the future
    ],
)
def test_administered_at_bounds(administered_at: datetime, baseline_at: datetime | None, field: str | None) -> None:
    now = T0 + timedelta(days=40)
    baseline = Baseline(uuid.uuid4(), 18, baseline_at) if baseline_at else None
    if field is None:
        check_time(EPISODE, administered_at, now, POLICY, baseline, "phq9")
    else:
        with pytest.raises(Refused) as exc:
            check_time(EPISODE, administered_at, now, POLICY, baseline, "phq9")
        assert exc.value.field == field


@pytest.mark.parametrize(
    ("roles", "instrument", "allowed"),
    [
        ({"patient_app"}, "phq9", True),
        ({"partner"}, "gad7", True),
        ({"patient_app"}, "hamd17", False),  # clinician-rated
        ({"partner"}, "hamd17", False),
        ({"clinician"}, "hamd17", True),
        ({"admin"}, "hamd17", True),
    ],
)
def test_clinician_rated_instruments_need_a_clinician(roles: set[str], instrument: str, allowed: bool) -> None:
    d = POLICY.catalogue.get(instrument)
    if allowed:
        check_rater(d, frozenset(roles))
    else:
        with pytest.raises(RaterNotAllowed) as exc:
            check_rater(d, frozenset(roles))
        assert (exc.value.field, status_for(exc.value)) == ("instrument", 403)


# ---- timepoints and change ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("requested", "has_baseline", "expected"),
    [
        (None, False, Timepoint.baseline),
        (Timepoint.session, False, Timepoint.baseline),  # the first score is the baseline
        (Timepoint.end, False, Timepoint.baseline),
        (Timepoint.baseline, False, Timepoint.baseline),
        (None, True, Timepoint.session),
        (Timepoint.session, True, Timepoint.session),
        (Timepoint.end, True, Timepoint.end),
        (Timepoint.baseline, True, "refused"),
    ],
)
def test_timepoint(requested: Timepoint | None, has_baseline: bool, expected) -> None:
    baseline = Baseline(uuid.uuid4(), 18, T0) if has_baseline else None
    if expected == "refused":
        with pytest.raises(Refused) as exc:
            decide_timepoint(requested, baseline, "phq9")
        assert exc.value.field == "timepoint"
    else:
        assert decide_timepoint(requested, baseline, "phq9") == expected


@pytest.mark.parametrize(
    ("instrument", "baseline", "latest", "change", "reliable"),
    [
        # PHQ-9 threshold 6: exactly at it and one below, both directions
        ("phq9", 18, 12, -6, ReliableChange.improved),
        ("phq9", 18, 13, -5, ReliableChange.no_reliable_change),
        ("phq9", 10, 16, 6, ReliableChange.deteriorated),
        ("phq9", 10, 15, 5, ReliableChange.no_reliable_change),
        # GAD-7 threshold 4
        ("gad7", 12, 8, -4, ReliableChange.improved),
        ("gad7", 12, 9, -3, ReliableChange.no_reliable_change),
        ("gad7", 8, 12, 4, ReliableChange.deteriorated),
        ("gad7", 9, 12, 3, ReliableChange.no_reliable_change),
    ],
)
def test_change_from_baseline(instrument: str, baseline: int, latest: int, change: int, reliable: ReliableChange) -> None:
    answers = phq9(latest) if instrument == "phq9" else gad7(latest)
    s = scored(instrument, answers, Baseline(uuid.uuid4(), baseline, T0))
    assert (s.total, s.baseline_total, s.change_from_baseline, s.reliable_change) == (latest, baseline, change, reliable)


def test_without_a_threshold_reliable_change_is_not_guessed() -> None:
    # AUDIT has no reliable-change criterion (docs/instruments.md); WSAS has one since issue 15.
    s = scored("audit", {n: 0 for n in range(1, 11)}, Baseline(uuid.uuid4(), 40, T0))
    assert (s.change_from_baseline, s.reliable_change) == (-40, None)


def test_the_baseline_itself_has_no_change() -> None:
    s = scored("phq9", phq9(18), None, Timepoint.baseline)
    assert (s.timepoint, s.baseline_total, s.change_from_baseline, s.reliable_change) == (Timepoint.baseline, None, None, None)
    assert (s.band, s.caseness) == ("moderately_severe", True)


@pytest.mark.parametrize(("item9", "flags"), [(0, ()), (1, ("safety_item_positive",)), (3, ("safety_item_positive",))])
def test_item9_flag_whatever_the_total(item9: int, flags: tuple) -> None:
    s = scored("phq9", phq9(item9, item9), None, Timepoint.baseline)
    assert s.total == item9 and s.band == "minimal" and s.flags == flags


def test_edeq_submission_keeps_subscales_and_display_total() -> None:
    answers = {n: 0 for n in [*range(1, 13), *range(19, 29)]} | {1: 6, 2: 6, 3: 6, 4: 6, 5: 6}
    s = scored("edeq6", answers, None, Timepoint.baseline)
    assert s.subscales["restraint"] == 6.0 and s.total == 1.5 and s.display_total == "1.50" and s.caseness is False


# ---- idempotency key content ----------------------------------------------------------------

def test_fingerprint_ignores_key_order_and_offset_but_not_content() -> None:
    a = fingerprint("phq9", {1: 0, 2: 1}, T0, "session", 3)
    assert a == fingerprint("phq9", {2: 1, 1: 0}, T0.astimezone(timezone(timedelta(hours=2))), "session", 3)
    assert a != fingerprint("phq9", {1: 0, 2: 2}, T0, "session", 3)
    assert a != fingerprint("phq9", {1: 0, 2: 1}, T0, "session", 4)
    assert a != fingerprint("phq9", {1: 0, 2: 1}, T0 + timedelta(seconds=1), "session", 3)


def test_parse_answers_only_converts_canonical_numbers() -> None:
    assert parse_answers({"1": 0, "12": 1, "01": 2, "x": 3, "0": 4}) == {1: 0, 12: 1, "01": 2, "x": 3, "0": 4}
