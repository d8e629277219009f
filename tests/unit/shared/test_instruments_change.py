"""Change classification tests (domain.md 3.2, NHS Talking Therapies). Thresholds and cut-offs
are written out here, not read back from the catalogue."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import pytest

from rapport_shared.instruments import (
    Catalogue,
    TotalError,
    UnknownInstrument,
    classify_episode,
    classify_instrument,
    jacobson_truax,
    load_catalogue,
    reliable_change,
)

pytestmark = pytest.mark.unit


# --- per-instrument reliable change -----------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "baseline", "latest", "expected"),
    [
        # PHQ-9, threshold 6: exactly at the threshold counts, one below does not
        ("phq9", 15, 9, "improved"),
        ("phq9", 15, 10, "no_reliable_change"),
        ("phq9", 27, 0, "improved"),
        ("phq9", 9, 15, "deteriorated"),
        ("phq9", 10, 15, "no_reliable_change"),
        ("phq9", 12, 12, "no_reliable_change"),
        # GAD-7, threshold 4
        ("gad7", 12, 8, "improved"),
        ("gad7", 12, 9, "no_reliable_change"),
        ("gad7", 8, 12, "deteriorated"),
        ("gad7", 9, 12, "no_reliable_change"),
        # no SD/reliability configured: not determinable, never guessed
        ("hamd17", 40, 0, None),
        ("edeq6", 6.0, 0.0, None),
        ("audit", 40, 0, None),
        # WSAS: Jacobson–Truax from a published SD and reliability (12.82 points, docs/instruments.md)
        ("wsas", 0, 40, "deteriorated"),
    ],
)
def test_reliable_change(code: str, baseline: float, latest: float, expected: str | None) -> None:
    assert reliable_change(code, baseline, latest) == expected


@pytest.mark.parametrize(("code", "threshold"), [("phq9", 6), ("gad7", 4)])
def test_direct_thresholds(code: str, threshold: int) -> None:
    assert load_catalogue().get(code).reliable_change_threshold == threshold


@pytest.mark.parametrize("code", ["hamd17", "edeq6", "audit"])
def test_other_thresholds_are_unset_until_a_clinic_configures_them(code: str) -> None:
    rule = load_catalogue().get(code).reliable_change
    assert (rule.threshold, rule.sd, rule.reliability, rule.value) == (None, None, None, None)


@pytest.mark.parametrize(
    ("code", "baseline", "latest", "change", "case_start", "case_end"),
    [
        ("phq9", 10, 9, -1, True, False),
        ("phq9", 9, 10, 1, False, True),
        ("gad7", 8, 7, -1, True, False),
        ("audit", 8, 7, -1, True, False),
        ("wsas", 30, 5, -25, None, None),
        ("edeq6", 3.0, 2.8, -0.2, True, True),
        ("edeq6", 2.8, 2.75, -0.05, True, False),
    ],
)
def test_classify_instrument_caseness_and_change(
    code: str, baseline: float, latest: float, change: float, case_start: bool | None, case_end: bool | None
) -> None:
    result = classify_instrument(code, baseline, latest)
    assert result.change == pytest.approx(change)
    assert type(result.change) is type(change)
    assert (result.caseness_at_baseline, result.caseness_at_end) == (case_start, case_end)


# --- Jacobson–Truax from data ----------------------------------------------------------------
def packaged(code: str) -> dict[str, Any]:
    text = (resources.files("rapport_shared.instruments") / "data" / f"{code}.json").read_text()
    return json.loads(text)


def wsas_with(sd: float, reliability: float) -> Catalogue:
    """The packaged WSAS definition with a clinic's SD and reliability configured."""
    data = packaged("wsas")
    data["reliable_change"] = {"threshold": None, "sd": sd, "reliability": reliability, "source": "clinic"}
    return Catalogue.from_data([data])


@pytest.mark.parametrize(
    ("sd", "reliability", "expected"),
    [
        (5, 0.8, 6.198064),  # 1.96 · 5 · √2 · √0.2
        (7.5, 0.9, 6.574040),  # 1.96 · 7.5 · √2 · √0.1
        (10, 0.0, 27.718586),  # 1.96 · 10 · √2
    ],
)
def test_jacobson_truax_threshold(sd: float, reliability: float, expected: float) -> None:
    threshold = wsas_with(sd, reliability).get("wsas").reliable_change_threshold
    assert threshold == pytest.approx(expected, abs=1e-6)
    assert threshold == pytest.approx(1.96 * sd * math.sqrt(2) * math.sqrt(1 - reliability))
    assert jacobson_truax(sd, reliability) == threshold


@pytest.mark.parametrize(
    ("baseline", "latest", "expected"),
    [
        (20, 13, "improved"),  # fall 7 >= 6.198
        (20, 14, "no_reliable_change"),  # fall 6 < 6.198
        (13, 20, "deteriorated"),
        (14, 20, "no_reliable_change"),
    ],
)
def test_reliable_change_with_configured_sd_and_reliability(baseline: int, latest: int, expected: str) -> None:
    assert reliable_change("wsas", baseline, latest, catalogue=wsas_with(5, 0.8)) == expected


def test_exactly_at_a_computed_threshold_counts() -> None:
    # sd 5, r 0.5: 1.96 · 5 · √2 · √0.5 = 1.96 · 5 = 9.8; a fall of 10 reaches it, 9 does not
    catalogue = wsas_with(5, 0.5)
    threshold = catalogue.get("wsas").reliable_change_threshold
    assert threshold == pytest.approx(9.8)
    assert reliable_change("wsas", 20, 10, catalogue=catalogue) == "improved"
    assert reliable_change("wsas", 20, 11, catalogue=catalogue) == "no_reliable_change"


# --- episode classification --------------------------------------------------------------------
EPISODE_FIELDS = (
    "caseness_at_baseline",
    "caseness_at_end",
    "counts_toward_recovery",
    "recovery",
    "reliable_improvement",
    "reliable_deterioration",
    "reliable_recovery",
)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # both improve reliably, both end below caseness
        ({"phq9": (15, 4), "gad7": (12, 7)}, (True, False, True, True, True, False, True)),
        # improvement on one + deterioration on the other: not reliable improvement
        ({"phq9": (20, 10), "gad7": (5, 9)}, (True, True, True, False, False, True, False)),
        # improvement on one, no reliable change on the other: reliable improvement
        ({"phq9": (16, 10), "gad7": (9, 8)}, (True, True, True, False, True, False, False)),
        # recovery needs both below caseness: GAD-7 still at 8
        ({"phq9": (15, 4), "gad7": (12, 8)}, (True, True, True, False, True, False, False)),
        # GAD-7 at 7 (one below): recovered
        ({"phq9": (15, 4), "gad7": (12, 7)}, (True, False, True, True, True, False, True)),
        # PHQ-9 ends at exactly 10: still a case
        ({"phq9": (16, 10), "gad7": (12, 4)}, (True, True, True, False, True, False, False)),
        # PHQ-9 ends at 9 (one below)
        ({"phq9": (16, 9), "gad7": (12, 4)}, (True, False, True, True, True, False, True)),
        # recovered but without reliable improvement: not reliable recovery
        ({"phq9": (11, 6), "gad7": (8, 7)}, (True, False, True, True, False, False, False)),
        # caseness at baseline on GAD-7 only counts toward recovery
        ({"phq9": (5, 4), "gad7": (8, 4)}, (True, False, True, True, True, False, True)),
        # caseness at baseline on PHQ-9 only (exactly 10)
        ({"phq9": (10, 4), "gad7": (0, 0)}, (True, False, True, True, True, False, True)),
        # not at caseness at baseline (9 and 7, one below each): recovery not applicable
        ({"phq9": (9, 2), "gad7": (7, 2)}, (False, False, False, None, True, False, None)),
        ({"phq9": (9, 16), "gad7": (7, 7)}, (False, True, False, None, False, True, None)),
        # reliable deterioration on either measure, exactly at threshold
        ({"phq9": (10, 16), "gad7": (10, 10)}, (True, True, True, False, False, True, False)),
        ({"phq9": (10, 10), "gad7": (10, 14)}, (True, True, True, False, False, True, False)),
        # one below the thresholds: no reliable change either way
        ({"phq9": (10, 15), "gad7": (10, 13)}, (True, True, True, False, False, False, False)),
        # only one measure collected: the rules apply to it alone
        ({"phq9": (18, 12)}, (True, True, True, False, True, False, False)),
        ({"gad7": (10, 6)}, (True, False, True, True, True, False, True)),
        # other instruments alone do not make episode-level outcomes
        ({"wsas": (30, 5)}, (None, None, False, None, None, None, None)),
        ({}, (None, None, False, None, None, None, None)),
    ],
)
def test_episode_classification(pairs: dict[str, tuple[int, int]], expected: tuple) -> None:
    result = classify_episode(pairs)
    assert tuple(getattr(result, f) for f in EPISODE_FIELDS) == expected
    assert set(result.instruments) == set(pairs)


@pytest.mark.parametrize(
    ("baseline", "latest", "response", "remission"),
    [
        (20, 10, True, False),  # exactly a 50% fall; 10 is not < 5
        (20, 11, False, False),  # one short
        (9, 4, True, True),  # 55%; 4 < 5
        (9, 5, False, False),  # 44%; 5 is not < 5
        (8, 4, True, True),  # exactly 50%
        (3, 2, False, True),  # 33%
        (1, 0, True, True),  # 100%
        (0, 0, None, True),  # baseline 0: response not determinable (no division, no fall possible)
        (0, 3, None, True),
        (4, 12, False, False),
    ],
)
def test_response_and_remission(baseline: int, latest: int, response: bool | None, remission: bool) -> None:
    result = classify_episode({"phq9": (baseline, latest), "gad7": (0, 0)})
    assert result.response is response
    assert result.remission is remission


def test_response_and_remission_need_phq9() -> None:
    result = classify_episode({"gad7": (15, 0)})
    assert (result.response, result.remission) == (None, None)


def test_extra_instruments_are_classified_but_do_not_change_episode_outcomes() -> None:
    base = classify_episode({"phq9": (15, 4), "gad7": (12, 7)})
    with_extra = classify_episode({"phq9": (15, 4), "gad7": (12, 7), "audit": (7, 30), "wsas": (0, 40)})
    assert with_extra.paired_measures == ("phq9", "gad7")
    assert tuple(getattr(with_extra, f) for f in EPISODE_FIELDS) == tuple(getattr(base, f) for f in EPISODE_FIELDS)
    assert with_extra.instruments["audit"].caseness_at_end is True
    assert with_extra.instruments["audit"].reliable_change is None


@pytest.mark.parametrize(
    ("pairs", "improvement", "deterioration", "recovery", "reliable_recovery"),
    [
        # PHQ-9 improved, AUDIT's change undeterminable: could have deteriorated -> unknown
        ({"phq9": (15, 4), "audit": (10, 2)}, None, None, True, None),
        # PHQ-9 deteriorated: decided whatever AUDIT did
        ({"phq9": (4, 15), "audit": (10, 2)}, False, True, False, False),
        # neither measure improved reliably: improvement unknown (AUDIT may have)
        ({"phq9": (12, 11), "audit": (10, 2)}, None, None, False, False),
    ],
)
def test_configured_paired_measure_without_threshold_is_not_guessed(
    pairs: dict, improvement: bool | None, deterioration: bool | None, recovery: bool, reliable_recovery: bool | None
) -> None:
    # A programme swapping GAD-7 for another measure (domain.md 3.2, configurable).
    result = classify_episode(pairs, paired_measures=("phq9", "audit"))
    assert result.paired_measures == ("phq9", "audit")
    assert (result.reliable_improvement, result.reliable_deterioration) == (improvement, deterioration)
    assert (result.recovery, result.reliable_recovery) == (recovery, reliable_recovery)


def test_gad7_is_ignored_when_not_a_configured_paired_measure() -> None:
    result = classify_episode({"phq9": (15, 4), "gad7": (4, 12)}, paired_measures=("phq9",))
    assert (result.reliable_improvement, result.reliable_deterioration, result.recovery) == (True, False, True)
    assert result.instruments["gad7"].reliable_change == "deteriorated"


# --- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pairs", "field", "reason"),
    [
        ({"phq9": (True, 4)}, "pairs['phq9'].baseline", "must be a number, not bool"),
        ({"phq9": (10, "4")}, "pairs['phq9'].latest", "must be a number, not str"),
        ({"phq9": (10.0, 4)}, "pairs['phq9'].baseline", "must be an integer total for PHQ-9"),
        ({"phq9": (28, 4)}, "pairs['phq9'].baseline", "must be between 0 and 27, got 28"),
        ({"gad7": (10, -1)}, "pairs['gad7'].latest", "must be between 0 and 21, got -1"),
        ({"edeq6": (6.01, 1.0)}, "pairs['edeq6'].baseline", "must be between 0 and 6, got 6.01"),
        ({"edeq6": (float("nan"), 1.0)}, "pairs['edeq6'].baseline", "must be finite"),
        ({"phq9": (10,)}, "pairs['phq9']", "must be a (baseline, latest) pair"),
        ({"phq9": (10, 4, 2)}, "pairs['phq9']", "must be a (baseline, latest) pair"),
        ({"phq9": "10"}, "pairs['phq9']", "must be a (baseline, latest) pair"),
        ([("phq9", (10, 4))], "pairs", "must be a mapping"),
    ],
)
def test_bad_totals_are_refused(pairs: Any, field: str, reason: str) -> None:
    with pytest.raises(TotalError) as info:
        classify_episode(pairs)
    assert info.value.field == field
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: classify_episode({"phq10": (1, 2)}), "phq10"),
        (lambda: classify_episode({}, paired_measures=("phq9", "gad8")), "gad8"),
        (lambda: classify_episode({}, trial_measure="bdi"), "bdi"),
        (lambda: reliable_change("PHQ9", 10, 4), "PHQ9"),
    ],
)
def test_unknown_instruments_are_refused(call: Any, code: str) -> None:
    with pytest.raises(UnknownInstrument) as info:
        call()
    assert info.value.code == code


@pytest.mark.parametrize("code", ["wsas", "hamd17"])
def test_paired_measure_needs_a_caseness_cutoff(code: str) -> None:
    with pytest.raises(ValueError, match=f"paired measure '{code}' has no caseness cut-off"):
        classify_episode({"phq9": (15, 4)}, paired_measures=("phq9", code))
