"""Scoring and catalogue tests. Expected values are written out from domain.md 3.1, not read
back from the catalogue, so a wrong data file fails here."""

from __future__ import annotations

import copy
import json
from importlib import resources

import pytest

from rapport_shared.instruments import (
    AnswerError,
    Catalogue,
    CatalogueError,
    UnknownInstrument,
    load_catalogue,
    score,
)

pytestmark = pytest.mark.unit

# --- domain.md 3.1, written out ------------------------------------------------------------
EDEQ_ITEMS = (*range(1, 13), *range(19, 29))
HAMD_WIDE = {1, 2, 3, 7, 8, 9, 10, 11, 15}  # 0–4; the rest 0–2

ALLOWED: dict[str, dict[int, tuple[int, ...]]] = {
    "phq9": {n: (0, 1, 2, 3) for n in range(1, 10)},
    "gad7": {n: (0, 1, 2, 3) for n in range(1, 8)},
    "hamd17": {n: tuple(range(5 if n in HAMD_WIDE else 3)) for n in range(1, 18)},
    "audit": {n: (tuple(range(5)) if n <= 8 else (0, 2, 4)) for n in range(1, 11)},
    "wsas": {n: tuple(range(9)) for n in range(1, 6)},
    "edeq6": {n: tuple(range(7)) for n in EDEQ_ITEMS},
}
MAX_TOTAL = {"phq9": 27, "gad7": 21, "hamd17": 52, "audit": 40, "wsas": 40}
BANDS = {
    "phq9": [("minimal", 0), ("mild", 5), ("moderate", 10), ("moderately_severe", 15), ("severe", 20)],
    "gad7": [("minimal", 0), ("mild", 5), ("moderate", 10), ("severe", 15)],
    "hamd17": [("none", 0), ("mild", 8), ("moderate", 14), ("severe", 19), ("very_severe", 23)],
    "audit": [("zone_i", 0), ("zone_ii", 8), ("zone_iii", 16), ("zone_iv", 20)],
    "wsas": [("subclinical", 0), ("significant", 10), ("moderately_severe", 21)],
}


def answers_with_total(code: str, total: int) -> dict[int, int]:
    """Some valid answers summing to ``total`` (respecting per-item allowed values)."""
    items = list(ALLOWED[code].items())
    # reachable[i] = sums achievable by items[i:]
    reachable: list[set[int]] = [set() for _ in range(len(items) + 1)]
    reachable[-1] = {0}
    for i in range(len(items) - 1, -1, -1):
        reachable[i] = {s + v for s in reachable[i + 1] for v in items[i][1]}
    assert total in reachable[0], f"{code} cannot total {total}"
    answers, remaining = {}, total
    for i, (number, values) in enumerate(items):
        value = max(v for v in values if remaining - v in reachable[i + 1])
        answers[number] = value
        remaining -= value
    return answers


def zeros(code: str) -> dict[int, int]:
    return {n: 0 for n in ALLOWED[code]}


def band_cases() -> list[tuple[str, int, str]]:
    cases = []
    for code, bands in BANDS.items():
        for index, (name, lower) in enumerate(bands):
            cases.append((code, lower, name))  # exactly at the lower bound
            if index:
                cases.append((code, lower - 1, bands[index - 1][0]))  # one below
        cases.append((code, MAX_TOTAL[code], bands[-1][0]))
    return cases


# --- bands, totals, caseness ------------------------------------------------------------------
@pytest.mark.parametrize(("code", "total", "band"), band_cases())
def test_band_at_and_below_each_lower_bound(code: str, total: int, band: str) -> None:
    result = score(code, answers_with_total(code, total))
    assert result.total == total
    assert isinstance(result.total, int)
    assert result.display_total == str(total)
    assert result.band == band


@pytest.mark.parametrize(
    ("code", "total", "caseness"),
    [
        ("phq9", 9, False),
        ("phq9", 10, True),
        ("phq9", 27, True),
        ("gad7", 7, False),
        ("gad7", 8, True),
        ("audit", 7, False),
        ("audit", 8, True),
        ("hamd17", 0, None),
        ("hamd17", 52, None),
        ("wsas", 0, None),
        ("wsas", 40, None),
    ],
)
def test_caseness_boundaries(code: str, total: int, caseness: bool | None) -> None:
    assert score(code, answers_with_total(code, total)).caseness is caseness


@pytest.mark.parametrize("code", sorted(MAX_TOTAL))
def test_summed_instruments_have_no_subscales(code: str) -> None:
    result = score(code, answers_with_total(code, MAX_TOTAL[code]))
    assert result.subscales == {}
    assert result.instrument == code


# --- per-item allowed values -----------------------------------------------------------------
def item_value_cases() -> list[tuple[str, int, int, bool]]:
    cases = []
    for code, items in ALLOWED.items():
        for number, values in items.items():
            for value in range(-1, max(values) + 2):
                cases.append((code, number, value, value in values))
    return cases


@pytest.mark.parametrize(("code", "number", "value", "accepted"), item_value_cases())
def test_every_item_accepts_exactly_its_allowed_values(code: str, number: int, value: int, accepted: bool) -> None:
    answers = zeros(code) | {number: value}
    if accepted:
        assert score(code, answers).instrument == code
    else:
        with pytest.raises(AnswerError) as info:
            score(code, answers)
        assert info.value.field == f"answers.item_{number}"
        assert f"got {value}" in info.value.reason


@pytest.mark.parametrize(("number", "value"), [(9, 1), (9, 3), (10, 1), (10, 3), (9, 5)])
def test_audit_items_9_and_10_refuse_odd_values(number: int, value: int) -> None:
    with pytest.raises(AnswerError) as info:
        score("audit", zeros("audit") | {number: value})
    assert info.value.field == f"answers.item_{number}"
    assert info.value.reason == f"must be one of 0, 2, 4, got {value}"


@pytest.mark.parametrize(("number", "value", "total"), [(9, 2, 2), (9, 4, 4), (10, 2, 2), (10, 4, 4), (8, 3, 3)])
def test_audit_items_9_and_10_accept_0_2_4(number: int, value: int, total: int) -> None:
    assert score("audit", zeros("audit") | {number: value}).total == total


@pytest.mark.parametrize(
    ("number", "highest"),
    [(1, 4), (2, 4), (3, 4), (4, 2), (5, 2), (6, 2), (7, 4), (8, 4), (9, 4), (10, 4),
     (11, 4), (12, 2), (13, 2), (14, 2), (15, 4), (16, 2), (17, 2)],
)
def test_hamd_per_item_ranges(number: int, highest: int) -> None:
    assert score("hamd17", zeros("hamd17") | {number: highest}).total == highest
    with pytest.raises(AnswerError) as info:
        score("hamd17", zeros("hamd17") | {number: highest + 1})
    assert info.value.reason == f"must be between 0 and {highest}, got {highest + 1}"


# --- PHQ-9 item 9 safety flag -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("item9", "others", "flags", "band"),
    [
        (0, 0, (), "minimal"),
        (1, 0, ("safety_item_positive",), "minimal"),  # raised regardless of the total
        (2, 0, ("safety_item_positive",), "minimal"),
        (3, 0, ("safety_item_positive",), "minimal"),
        (0, 3, (), "severe"),
        (3, 3, ("safety_item_positive",), "severe"),
    ],
)
def test_phq9_item9_flag(item9: int, others: int, flags: tuple[str, ...], band: str) -> None:
    answers = {n: others for n in range(1, 9)} | {9: item9}
    result = score("phq9", answers)
    assert result.flags == flags
    assert result.band == band


@pytest.mark.parametrize("code", ["gad7", "hamd17", "edeq6", "audit", "wsas"])
def test_other_instruments_raise_no_flags_at_maximum(code: str) -> None:
    answers = {n: max(values) for n, values in ALLOWED[code].items()}
    assert score(code, answers).flags == ()


# --- EDE-Q 6.0 --------------------------------------------------------------------------------
def edeq(values: dict[int, int], default: int = 0) -> dict[int, int]:
    return {n: default for n in EDEQ_ITEMS} | values


@pytest.mark.parametrize(
    ("answers", "subscales", "total", "display", "caseness"),
    [
        # item 8 counts in both shape (8 items) and weight (5 items)
        (edeq({8: 6}), {"restraint": 0, "eating_concern": 0, "shape_concern": 0.75, "weight_concern": 1.2},
         0.4875, "0.49", False),
        # shape-only item 6: 4/8 = 0.5 -> global 0.125, shown half-up as 0.13
        (edeq({6: 4}), {"restraint": 0, "eating_concern": 0, "shape_concern": 0.5, "weight_concern": 0},
         0.125, "0.13", False),
        # weight-only item 12
        (edeq({12: 5}), {"restraint": 0, "eating_concern": 0, "shape_concern": 0, "weight_concern": 1.0},
         0.25, "0.25", False),
        (edeq({1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 7: 1, 9: 1, 19: 1, 20: 1, 21: 1,
               6: 2, 8: 4, 10: 2, 11: 2, 23: 2, 26: 2, 27: 2, 28: 2, 12: 0, 22: 0, 24: 0, 25: 1}),
         {"restraint": 4.0, "eating_concern": 1.0, "shape_concern": 2.25, "weight_concern": 1.0},
         2.0625, "2.06", False),
        # exactly at the clinical cut-off 2.8: restraint 11/5 = 2.2, the rest 3
        (edeq({1: 3, 2: 2, 3: 2, 4: 2, 5: 2}, default=3),
         {"restraint": 2.2, "eating_concern": 3.0, "shape_concern": 3.0, "weight_concern": 3.0},
         2.8, "2.80", True),
        # just below: restraint 2.0 -> 2.75
        (edeq({1: 2, 2: 2, 3: 2, 4: 2, 5: 2}, default=3),
         {"restraint": 2.0, "eating_concern": 3.0, "shape_concern": 3.0, "weight_concern": 3.0},
         2.75, "2.75", False),
        (edeq({}, default=6), {"restraint": 6, "eating_concern": 6, "shape_concern": 6, "weight_concern": 6},
         6.0, "6.00", True),
        (edeq({}), {"restraint": 0, "eating_concern": 0, "shape_concern": 0, "weight_concern": 0}, 0.0, "0.00", False),
    ],
)
def test_edeq_subscales_and_global(
    answers: dict[int, int], subscales: dict[str, float], total: float, display: str, caseness: bool
) -> None:
    result = score("edeq6", answers)
    assert result.subscales == pytest.approx(subscales)
    assert set(result.subscales) == {"restraint", "eating_concern", "shape_concern", "weight_concern"}
    assert isinstance(result.total, float)
    assert result.total == pytest.approx(total)
    assert result.display_total == display
    assert result.caseness is caseness
    assert result.band is None


MEANS_TOY = {
    "code": "means_toy",
    "name": "MEANS-TOY",
    "title": "Two subscales of ten items",
    "rater": "patient",
    "measures": "testing",
    "target_conditions": ["all"],
    "items": [{"number": n, "min": 0, "max": 6} for n in range(1, 21)],
    "scoring": "subscale_mean_of_means",
    "subscales": [
        {"code": "a", "label": "A", "items": list(range(1, 11))},
        {"code": "b", "label": "B", "items": list(range(11, 21))},
    ],
    "total_range": {"min": 0, "max": 6},
    "caseness": {"op": "ge", "value": 0.4},
}


@pytest.mark.parametrize(("b_sum", "caseness"), [(7, True), (6, False)])
def test_mean_cutoff_is_compared_exactly(b_sum: int, caseness: bool) -> None:
    # Subscale means 0.1 and 0.7: in floats (0.1 + 0.7) / 2 = 0.39999999999999997, below the
    # 0.4 cut-off; the exact mean is 0.4, which is at caseness.
    answers = {n: 0 for n in range(1, 21)} | {1: 1} | {11 + i: 1 for i in range(b_sum)}
    result = score("means_toy", answers, catalogue=Catalogue.from_data([MEANS_TOY]))
    assert result.caseness is caseness
    assert result.subscales == pytest.approx({"a": 0.1, "b": b_sum / 10})


@pytest.mark.parametrize("number", [13, 14, 15, 16, 17, 18])
def test_edeq_behavioural_items_are_refused(number: int) -> None:
    with pytest.raises(AnswerError) as info:
        score("edeq6", edeq({}) | {number: 0})
    assert info.value.field == f"answers.item_{number}"
    assert "not scored" in info.value.reason


# --- refusals ---------------------------------------------------------------------------------
PHQ = zeros("phq9")


def without(answers: dict[int, int], number: int) -> dict[int, int]:
    return {k: v for k, v in answers.items() if k != number}


@pytest.mark.parametrize(
    ("code", "answers", "field", "reason"),
    [
        ("phq9", without(PHQ, 9), "answers.item_9", "missing"),
        ("phq9", without(PHQ, 1), "answers.item_1", "missing"),
        ("phq9", {}, "answers.item_1", "missing"),
        ("phq9", PHQ | {10: 0}, "answers.item_10", "PHQ-9 has no item 10"),
        ("phq9", PHQ | {0: 0}, "answers.item_0", "PHQ-9 has no item 0"),
        ("gad7", PHQ, "answers.item_8", "GAD-7 has no item 8"),  # wrong count: 9 answers for 7 items
        ("wsas", zeros("gad7"), "answers.item_6", "WSAS has no item 6"),  # wrong count
        ("hamd17", zeros("phq9"), "answers.item_10", "missing"),  # wrong count: too few
        ("edeq6", {n: 0 for n in range(1, 23)}, "answers.item_13", "not scored"),  # 22 items, wrong numbers
        ("phq9", PHQ | {3: 4}, "answers.item_3", "must be between 0 and 3, got 4"),
        ("phq9", PHQ | {3: -1}, "answers.item_3", "must be between 0 and 3, got -1"),
        ("wsas", zeros("wsas") | {5: 9}, "answers.item_5", "must be between 0 and 8, got 9"),
        ("edeq6", edeq({28: 7}), "answers.item_28", "must be between 0 and 6, got 7"),
        ("phq9", PHQ | {9: 1.0}, "answers.item_9", "must be an integer, not float"),
        ("phq9", PHQ | {9: "1"}, "answers.item_9", "must be an integer, not str"),
        ("phq9", PHQ | {9: None}, "answers.item_9", "must be an integer, not NoneType"),
        ("phq9", PHQ | {9: True}, "answers.item_9", "must be an integer, not a boolean"),
        ("phq9", PHQ | {9: False}, "answers.item_9", "must be an integer, not a boolean"),
        ("phq9", without(PHQ, 1) | {True: 0}, "answers[True]", "item key must be an integer item number"),
        ("phq9", without(PHQ, 1) | {"1": 0}, "answers['1']", "item key must be an integer item number"),
        ("phq9", [0] * 9, "answers", "must be a mapping of item number to integer answer"),
        ("phq9", None, "answers", "must be a mapping of item number to integer answer"),
    ],
)
def test_refusals_name_the_field_and_reason(code: str, answers: object, field: str, reason: str) -> None:
    with pytest.raises(AnswerError) as info:
        score(code, answers)  # type: ignore[arg-type]
    assert info.value.field == field
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)
    assert str(info.value) == f"{field}: {info.value.reason}"


@pytest.mark.parametrize("code", ["phq10", "PHQ9", "", "phq-9", None])
def test_unknown_instrument(code: object) -> None:
    with pytest.raises(UnknownInstrument) as info:
        score(code, PHQ)  # type: ignore[arg-type]
    assert info.value.code == code
    assert repr(code) in str(info.value)


# --- the packaged catalogue -------------------------------------------------------------------
def test_catalogue_contents() -> None:
    catalogue = load_catalogue()
    assert sorted(catalogue.codes) == ["audit", "edeq6", "gad7", "hamd17", "phq9", "wsas"]
    assert load_catalogue() is catalogue  # loaded once, cached
    assert {d.code: len(d.items) for d in catalogue} == {
        "phq9": 9, "gad7": 7, "hamd17": 17, "edeq6": 22, "audit": 10, "wsas": 5,
    }


@pytest.mark.parametrize(
    ("code", "total", "panel", "items"),
    [("phq9", "44261-6", "44249-1", {9: "44260-8"}), ("gad7", "70274-6", None, {})],
)
def test_loinc_codes(code: str, total: str, panel: str | None, items: dict[int, str]) -> None:
    definition = load_catalogue().get(code)
    assert definition.loinc_total == total
    assert definition.loinc_panel == panel
    assert {i.number: i.loinc for i in definition.items if i.loinc} == items


def test_edeq_subscale_membership_and_cutoff() -> None:
    definition = load_catalogue().get("edeq6")
    assert {s.code: s.items for s in definition.subscales} == {
        "restraint": (1, 2, 3, 4, 5),
        "eating_concern": (7, 9, 19, 20, 21),
        "shape_concern": (6, 8, 10, 11, 23, 26, 27, 28),
        "weight_concern": (8, 12, 22, 24, 25),
    }
    assert definition.scoring == "subscale_mean_of_means"
    assert (definition.caseness.op, definition.caseness.value) == ("ge", 2.8)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("code", "conditions"),
    [("phq9", ["depression"]), ("gad7", ["anxiety"]), ("hamd17", ["depression"]),
     ("edeq6", ["eating_disorder"]), ("audit", ["substance_use"]), ("wsas", ["all"])],
)
def test_target_conditions(code: str, conditions: list[str]) -> None:
    assert [str(c) for c in load_catalogue().get(code).target_conditions] == conditions


# --- adding an instrument is adding data; bad data is refused at load time --------------------
TOY = {
    "code": "toy",
    "name": "TOY-3",
    "title": "A toy instrument",
    "rater": "patient",
    "measures": "testing",
    "target_conditions": ["all"],
    "items": [{"number": 1, "min": 0, "max": 3}, {"number": 2, "min": 0, "max": 3}, {"number": 3, "allowed": [0, 5]}],
    "scoring": "sum",
    "total_range": {"min": 0, "max": 11},
    "bands": [{"code": "low", "label": "low", "lower": 0}, {"code": "high", "label": "high", "lower": 6}],
    "caseness": {"op": "gt", "value": 6},
    "flags": [{"code": "item_three_positive", "item": 3, "op": "ge", "value": 5}],
}


@pytest.mark.parametrize(
    ("answers", "total", "band", "caseness", "flags"),
    [
        ({1: 3, 2: 3, 3: 0}, 6, "high", False, ()),
        ({1: 2, 2: 3, 3: 0}, 5, "low", False, ()),
        ({1: 2, 2: 0, 3: 5}, 7, "high", True, ("item_three_positive",)),
    ],
)
def test_instrument_added_as_data(
    answers: dict[int, int], total: int, band: str, caseness: bool, flags: tuple[str, ...]
) -> None:
    catalogue = Catalogue.from_data([TOY])
    result = score("toy", answers, catalogue=catalogue)
    assert (result.total, result.band, result.caseness, result.flags) == (total, band, caseness, flags)
    with pytest.raises(UnknownInstrument):
        score("phq9", PHQ, catalogue=catalogue)


def mutated(path: str, value: object) -> dict:
    data = copy.deepcopy(TOY)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("items.0.allowed", [0, 1], "either min/max or allowed"),
        ("items.0.min", 4, "min <= max"),
        ("items.2.allowed", [5, 0], "ascending"),
        ("items.0.max", True, "max"),  # a JSON true is not a number here
        ("items.1.number", 1, "unique and ascending"),
        ("total_range.max", 12, "does not match the items"),
        ("bands.0.lower", 1, "first band must start"),
        ("bands.1.lower", 0, "strictly ascending"),
        ("bands.1.lower", 12, "outside the total range"),
        ("caseness.value", 12, "outside the total range"),
        ("flags.0.item", 4, "unknown item 4"),
        ("scoring", "mean", "scoring"),
        ("code", "Toy", "code"),
        ("target_conditions", ["bulimia"], "target_conditions"),
        ("loinc_total", "44261", "loinc_total"),
        ("unknown_field", 1, "unknown_field"),
        ("reliable_change", {"threshold": 3, "sd": 2, "reliability": 0.8}, "not both"),
        ("reliable_change", {"sd": 2}, "together"),
        ("reliable_change", {"sd": 2, "reliability": 1}, "reliability"),
        ("reliable_change", {"threshold": 0}, "threshold"),
        ("subscales", [{"code": "a", "label": "A", "items": [1]}], "only defined for subscale_mean_of_means"),
        ("name", DELETE, "name"),
    ],
)
def test_invalid_definitions_are_refused(path: str, value: object, message: str) -> None:
    with pytest.raises(CatalogueError) as info:
        Catalogue.from_data([mutated(path, value)])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("subscales", "message"),
    [
        ([], "needs subscales"),
        ([{"code": "a", "label": "A", "items": [1, 2]}], "in no subscale"),
        ([{"code": "a", "label": "A", "items": [1, 2, 3, 4]}], "unknown or repeated"),
        ([{"code": "a", "label": "A", "items": [1, 2, 3]}, {"code": "a", "label": "B", "items": [1]}], "unique"),
    ],
)
def test_invalid_mean_of_means_definitions(subscales: list, message: str) -> None:
    data = mutated("scoring", "subscale_mean_of_means")
    data |= {"subscales": subscales, "bands": [], "caseness": None,
             "items": [{"number": n, "min": 0, "max": 6} for n in (1, 2, 3)], "total_range": {"min": 0, "max": 6}}
    with pytest.raises(CatalogueError) as info:
        Catalogue.from_data([data])
    assert message in str(info.value)


def test_duplicate_codes_are_refused() -> None:
    with pytest.raises(CatalogueError, match="duplicate instrument code 'toy'"):
        Catalogue.from_data([TOY, TOY])


def test_packaged_files_are_valid_json_named_by_code() -> None:
    data_dir = resources.files("rapport_shared.instruments") / "data"
    names = sorted(e.name for e in data_dir.iterdir() if e.name.endswith(".json"))
    assert names == ["audit.json", "edeq6.json", "gad7.json", "hamd17.json", "phq9.json", "wsas.json"]
    for name in names:
        assert json.loads((data_dir / name).read_text())["code"] + ".json" == name
