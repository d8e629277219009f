"""The measurement schedule per programme (domain.md §3.4; rapport_shared.programmes): what is
expected before each session for every target condition, clinic overrides that add, and the
refusal of anything that would remove the PHQ-9 risk screen."""

from __future__ import annotations

import json

import pytest
import yaml

from rapport_shared.contracts.base import TargetCondition
from rapport_shared.programmes import (
    RiskScreenError,
    Schedule,
    ScheduleError,
    expected_instruments,
    load_schedule,
    missing_instruments,
    packaged_schedule,
    session_of,
)
from rapport_shared.programmes.schedule import PACKAGE, DATA_FILE

pytestmark = pytest.mark.unit

CONDITIONS = [c.value for c in TargetCondition]
EVERY = ("phq9", "gad7")  # every programme, before every session


def base_data() -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files(PACKAGE) / DATA_FILE).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- time points
@pytest.mark.parametrize("n, mid", [(1, 1), (2, 1), (3, 2), (8, 4), (12, 6), (15, 8), (16, 8), (20, 10)])
def test_mid_course_is_session_ceil_n_over_2_and_the_end_is_n(n, mid):
    assert session_of("baseline", n) == 1
    assert session_of("mid", n) == mid
    assert session_of("end", n) == n


def test_without_a_known_count_only_the_baseline_is_placed():
    assert session_of("baseline", None) == 1 and session_of("mid", None) is None and session_of("end", None) is None


# ---------------------------------------------------------------- every condition
@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("n", [1, 8, 12, 16, 20])
def test_every_programme_asks_phq9_first_and_gad7_before_every_session(condition, n):
    for k in range(1, n + 3):  # past n too (maintenance sessions continue the numbering)
        got = expected_instruments(condition, k, n)
        assert got[:2] == EVERY, (condition, k, got)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_wsas_at_baseline_mid_and_end_only(condition):
    n = 16
    with_wsas = [k for k in range(1, n + 4) if "wsas" in expected_instruments(condition, k, n)]
    assert with_wsas == [1, 8, 16]


def test_depression_sessions_1_mid_4th_and_last():
    s = packaged_schedule()
    assert s.expected_instruments("depression", 1, 16) == ("phq9", "gad7", "wsas")
    assert s.expected_instruments("depression", 4, 16) == ("phq9", "gad7")
    assert s.expected_instruments("depression", 8, 16) == ("phq9", "gad7", "wsas")
    assert s.expected_instruments("depression", 16, 16) == ("phq9", "gad7", "wsas")
    # HAM-D-17 is clinician-rated and optional: listed when asked for, never a patient request
    assert s.expected_instruments("depression", 1, 16, include_optional=True) == ("phq9", "gad7", "wsas", "hamd17")
    [hamd] = [d for d in s.due("depression", 8, 16) if d.instrument == "hamd17"]
    assert hamd.rater == "clinician" and hamd.optional and hamd.reasons == ("mid",)
    assert "hamd17" not in s.questionnaire("depression", 1, 16)


def test_anxiety_sessions_1_mid_4th_and_last():
    assert expected_instruments("anxiety", 1, 12) == ("phq9", "gad7", "wsas")
    assert expected_instruments("anxiety", 4, 12) == ("phq9", "gad7")
    assert expected_instruments("anxiety", 6, 12) == ("phq9", "gad7", "wsas")
    assert expected_instruments("anxiety", 12, 12) == ("phq9", "gad7", "wsas")


def test_eating_disorders_edeq_every_4th_session_and_at_baseline_mid_and_end():
    n = 20
    course = packaged_schedule().course("eating_disorder", n)
    assert [k for k, codes in course.items() if "edeq6" in codes] == [1, 4, 8, 10, 12, 16, 20]
    assert course[1] == ("phq9", "gad7", "wsas", "edeq6")
    assert course[4] == ("phq9", "gad7", "edeq6")
    assert course[10] == ("phq9", "gad7", "wsas", "edeq6")  # mid (⌈20/2⌉)
    assert course[20] == ("phq9", "gad7", "wsas", "edeq6")
    assert course[3] == EVERY
    [edeq] = [d for d in packaged_schedule().due("eating_disorder", 8, 16) if d.instrument == "edeq6"]
    assert edeq.reasons == ("every_4th_session", "mid") and not edeq.optional
    # after the contracted course (maintenance numbering): every 4th session goes on, no mid or end
    assert expected_instruments("eating_disorder", 24, 20) == ("phq9", "gad7", "edeq6")
    assert expected_instruments("eating_disorder", 22, 20) == EVERY


def test_substance_use_audit_at_baseline_and_end_only():
    n = 12
    course = packaged_schedule().course("substance_use", n)
    assert [k for k, codes in course.items() if "audit" in codes] == [1, 12]
    assert course[1] == ("phq9", "gad7", "wsas", "audit")
    assert course[6] == ("phq9", "gad7", "wsas")  # mid: WSAS, not AUDIT (it asks about the past year)
    assert course[4] == EVERY
    assert course[12] == ("phq9", "gad7", "wsas", "audit")


def test_a_one_session_course_asks_everything_once():
    assert expected_instruments("substance_use", 1, 1) == ("phq9", "gad7", "wsas", "audit")
    [wsas] = [d for d in packaged_schedule().due("substance_use", 1, 1) if d.instrument == "wsas"]
    assert wsas.reasons == ("baseline", "mid", "end")


def test_an_unknown_count_places_no_mid_or_end_and_an_unknown_condition_only_every_programme():
    assert expected_instruments("eating_disorder", 1, None) == ("phq9", "gad7", "wsas", "edeq6")
    assert expected_instruments("eating_disorder", 8, None) == ("phq9", "gad7", "edeq6")
    assert expected_instruments(None, 1, 12) == ("phq9", "gad7", "wsas")
    with pytest.raises(ValueError, match="unknown target condition"):
        expected_instruments("insomnia", 1, 12)
    with pytest.raises(ValueError, match="session_number"):
        expected_instruments("depression", 0, 12)


def test_missing_names_the_expected_instruments_not_collected():
    assert missing_instruments("substance_use", 12, 12, ["phq9", "gad7"]) == ("wsas", "audit")
    assert missing_instruments("depression", 2, 12, ["phq9", "gad7", "wsas"]) == ()
    assert missing_instruments("depression", 1, 12, ["phq9", "gad7", "wsas"]) == ()  # HAM-D-17 optional: never missing


def test_every_target_condition_has_a_programme_and_the_data_names_catalogue_instruments():
    s = packaged_schedule()
    for condition in CONDITIONS:
        assert s.rules(condition)  # at least every programme's rules
    data = base_data()
    assert set(data["programmes"]) == set(CONDITIONS)
    del data["programmes"]["anxiety"]
    with pytest.raises(ScheduleError, match="missing: anxiety"):
        Schedule.from_data(data)
    data = base_data()
    data["programmes"]["insomnia"] = []
    with pytest.raises(ScheduleError, match="unknown: insomnia"):
        Schedule.from_data(data)
    data = base_data()
    data["programmes"]["anxiety"] = [{"instrument": "pdss", "at": ["baseline"]}]
    with pytest.raises(ScheduleError, match="unknown instrument 'pdss'"):
        Schedule.from_data(data)
    data = base_data()
    data["programmes"]["anxiety"] = [{"instrument": "wsas"}]
    with pytest.raises(ScheduleError, match="say when"):
        Schedule.from_data(data)


def test_a_packaged_schedule_without_the_risk_screen_before_every_session_is_refused():
    data = base_data()
    data["all"] = [r for r in data["all"] if r["instrument"] != "phq9"]
    with pytest.raises(RiskScreenError, match="before every session"):
        Schedule.from_data(data)
    data = base_data()
    data["all"][0] = {"instrument": "phq9", "every_nth_session": 2}
    with pytest.raises(RiskScreenError):
        Schedule.from_data(data)
    data = base_data()
    data["all"][0] = {"instrument": "phq9", "every_nth_session": 1, "optional": True}
    with pytest.raises(RiskScreenError):
        Schedule.from_data(data)


# ---------------------------------------------------------------- clinic overrides
def test_an_override_adds_a_disorder_specific_measure_and_more_often_an_existing_one():
    s = packaged_schedule().with_overrides({"add": {
        "anxiety": [{"instrument": "audit", "at": ["baseline", "end"], "note": "a clinic's choice"}],
        "all": [{"instrument": "wsas", "every_nth_session": 6}],
    }}, origin="clinic.yaml")
    assert s.expected_instruments("anxiety", 1, 12) == ("phq9", "gad7", "wsas", "audit")
    assert s.expected_instruments("anxiety", 12, 12) == ("phq9", "gad7", "wsas", "audit")
    assert s.expected_instruments("depression", 12, 16) == ("phq9", "gad7", "wsas")  # every 6th
    assert s.expected_instruments("depression", 3, 16) == EVERY
    assert s.origins == (DATA_FILE, "clinic.yaml")
    # the packaged schedule itself is unchanged
    assert packaged_schedule().expected_instruments("anxiety", 1, 12) == ("phq9", "gad7", "wsas")


def test_an_override_asking_for_phq9_less_often_or_optionally_removes_nothing():
    s = packaged_schedule().with_overrides({"add": {"all": [{"instrument": "phq9", "every_nth_session": 4,
                                                             "optional": True}]}})
    for k in range(1, 13):
        assert s.expected_instruments("substance_use", k, 12)[0] == "phq9"


@pytest.mark.parametrize("override", [
    {"remove": {"all": ["phq9"]}},
    {"remove": ["phq9"]},
    {"add": {}, "replace": {"all": [{"instrument": "gad7", "every_nth_session": 1}], "was": "phq9"}},
    {"risk_screen": "gad7"},
    {"risk_screen": None},
])
def test_an_override_that_would_remove_the_phq9_risk_screen_is_refused(override):
    with pytest.raises(RiskScreenError, match=r"risk screen \(phq9.*cannot be removed"):
        packaged_schedule().with_overrides(override, origin="clinic.yaml")


@pytest.mark.parametrize("override, match", [
    ({"remove": {"eating_disorder": ["edeq6"]}}, "overrides can only add instruments"),
    ({"add": {"insomnia": [{"instrument": "wsas", "at": ["end"]}]}}, "unknown programme 'insomnia'"),
    ({"add": {"anxiety": [{"instrument": "pdss", "at": ["end"]}]}}, "unknown instrument 'pdss'"),
    ({"add": {"anxiety": [{"instrument": "wsas", "at": ["week_6"]}]}}, "week_6"),
    ({"add": {"anxiety": [{"instrument": "wsas"}]}}, "say when"),
    (["phq9"], "a mapping with `add`"),
])
def test_other_bad_overrides_are_refused_naming_the_file(override, match):
    with pytest.raises(ScheduleError, match=match) as exc:
        packaged_schedule().with_overrides(override, origin="clinic.yaml")
    assert "clinic.yaml" in str(exc.value)


def test_overrides_are_read_from_a_yaml_or_json_file(tmp_path):
    y = tmp_path / "clinic.yaml"
    y.write_text("add:\n  anxiety:\n    - instrument: audit\n      at: [baseline]\n", encoding="utf-8")
    j = tmp_path / "clinic.json"
    j.write_text(json.dumps({"add": {"anxiety": [{"instrument": "audit", "at": ["end"]}]}}), encoding="utf-8")
    assert load_schedule(str(y)).expected_instruments("anxiety", 1, 12)[-1] == "audit"
    assert load_schedule(str(j)).expected_instruments("anxiety", 12, 12)[-1] == "audit"
    assert load_schedule(None) is packaged_schedule() and load_schedule("") is packaged_schedule()
    bad = tmp_path / "remove.yaml"
    bad.write_text("remove:\n  all: [phq9]\n", encoding="utf-8")
    with pytest.raises(RiskScreenError, match=str(bad)):
        load_schedule(str(bad))
    with pytest.raises(ScheduleError, match="cannot read"):
        load_schedule(str(tmp_path / "absent.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("add: [\n", encoding="utf-8")
    with pytest.raises(ScheduleError, match="cannot read"):
        load_schedule(str(broken))
