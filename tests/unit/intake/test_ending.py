"""Eligibility, the safety gate, completion, decline and erasure — pure domain rules."""

import json
from datetime import timedelta

import pytest

from intake_builders import AVAILABILITY, PHQ9_ITEM9, PHQ9_OK, RULES, T0, inventory, ready, referral
from rapport_shared.contracts import TargetCondition
from rapport_shared.http.errors import Conflict, Invalid
from rapport_intake.domain import commands
from rapport_intake.domain.model import Status, assess_eligibility
from rapport_intake.domain.rules import rules_from_data

pytestmark = pytest.mark.unit
NOW = T0 + timedelta(hours=2)


def screening(age=30, *exclusions):
    return commands.RecordEligibility(age_years=age, exclusions=list(exclusions))


# ---- eligibility -------------------------------------------------------------------------

@pytest.mark.parametrize("age,eligible", [(11, False), (12, True), (15, True), (18, True), (19, False)])
def test_ipt_a_admits_ages_12_to_18_inclusive(age, eligible):
    assert (assess_eligibility(screening(age), "ipt-a", RULES) == ()) is eligible
    if not eligible:
        assert assess_eligibility(screening(age), "ipt-a", RULES) == ("age_outside_template_range",)


def test_templates_without_an_age_rule_set_no_age_limit():
    # domain.md gives an age range for IPT-A only; nothing is invented for the others.
    for template in ("ipt-standard", "ipt-12", "ipt-brief", "ipt-group", "ipt-ed"):
        assert assess_eligibility(screening(70), template, RULES) == ()


@pytest.mark.parametrize("code", ["active_psychosis", "acute_risk_crisis_care"])
def test_general_exclusions_apply_to_every_template(code):
    for template in RULES.templates:
        assert assess_eligibility(screening(15, code), template, RULES) == (f"excluded_{code}",)


@pytest.mark.parametrize("code", ["bipolar_disorder", "active_substance_misuse"])
def test_ipt_a_exclusions_apply_to_ipt_a_only(code):
    assert assess_eligibility(screening(15, code), "ipt-a", RULES) == (f"excluded_{code}",)
    assert assess_eligibility(screening(30, code), "ipt-standard", RULES) == ()


def test_every_reason_is_kept_in_configured_order():
    reasons = assess_eligibility(screening(25, "bipolar_disorder", "active_psychosis"), "ipt-a", RULES)
    assert reasons == ("excluded_active_psychosis", "excluded_bipolar_disorder", "age_outside_template_range")


def test_an_unknown_exclusion_is_refused():
    with pytest.raises(Invalid) as e:
        assess_eligibility(screening(30, "active_psychosis", "grumpiness"), "ipt-standard", RULES)
    assert e.value.field == "exclusions.1"


def test_eligibility_needs_the_template_first():
    r = referral()
    with pytest.raises(Conflict) as e:
        r.record_eligibility(screening(), RULES, "ic-1", NOW)
    assert e.value.extra["missing"] == ["template_id"] and r.eligibility is None


def test_an_excluded_referral_is_declined_with_its_reason():
    r = ready(exclusions=["active_psychosis"])
    assert r.status == Status.declined and r.decline_reasons == ("excluded_active_psychosis",)
    assert r.eligibility.eligible is False
    with pytest.raises(Conflict):
        r.complete(NOW, RULES)  # never a course
    event = r.declined_event()
    assert (event.reason_code, event.reason_codes, event.template_id) == (
        "excluded_active_psychosis", ["excluded_active_psychosis"], "ipt-standard")


def test_an_age_outside_the_template_declines():
    r = ready(template="ipt-a", age=25)
    assert r.status == Status.declined and r.decline_reasons == ("age_outside_template_range",)


def test_changing_the_template_clears_the_eligibility_decided_for_another():
    r = ready(template="ipt-standard", age=25)
    assert r.eligibility.eligible
    r.choose_template("ipt-standard", RULES)
    assert r.eligibility is not None  # same template: still valid
    r.choose_template("ipt-a", RULES)
    assert r.eligibility is None and "eligibility" in r.missing_for_completion(RULES)


def test_exclusion_list_and_age_rules_are_data():
    data = json.loads((__import__("rapport_intake.domain.rules", fromlist=["x"]).DEFAULT_RULES).read_text())
    data["templates"]["ipt-standard"]["age"] = {"min": 18}
    data["exclusions"].append({"code": "dementia", "applies_to": ["ipt-group"], "reason_code": "excluded_dementia"})
    rules = rules_from_data(data)
    assert assess_eligibility(screening(17), "ipt-standard", rules) == ("age_outside_template_range",)
    assert assess_eligibility(screening(70, "dementia"), "ipt-group", rules) == ("excluded_dementia",)


def test_rules_refuse_exclusions_for_unknown_templates():
    data = json.loads((__import__("rapport_intake.domain.rules", fromlist=["x"]).DEFAULT_RULES).read_text())
    data["exclusions"].append({"code": "x", "applies_to": ["ipt-zz"], "reason_code": "excluded_x"})
    with pytest.raises(ValueError, match="unknown templates"):
        rules_from_data(data)


# ---- completion --------------------------------------------------------------------------

def test_completion_lists_everything_missing():
    r = referral()
    with pytest.raises(Conflict) as e:
        r.complete(NOW, RULES)
    assert e.value.extra["missing"] == ["consent", "baseline.phq9", "inventory", "focus", "template_id",
                                        "clinician_id", "availability", "eligibility"]
    assert r.status == Status.open


@pytest.mark.parametrize("condition,instrument", [(TargetCondition.anxiety, "gad7"),
                                                  (TargetCondition.eating_disorder, "edeq6"),
                                                  (TargetCondition.substance_use, "audit")])
def test_the_condition_decides_the_baseline_instruments(condition, instrument):
    assert f"baseline.{instrument}" in referral(condition).missing_for_completion(RULES)


def test_refused_consent_is_still_missing():
    r = ready()
    r.record_consent(commands.RecordConsent(given=False, method="verbal"), "ic-1", NOW)
    assert r.missing_for_completion(RULES) == ["consent"]


def test_a_complete_record_completes_once():
    r = ready()
    assert r.missing_for_completion(RULES) == []
    assert r.complete(NOW, RULES) is True
    assert (r.status, r.completed_at) == (Status.completed, NOW)
    assert r.complete(NOW + timedelta(hours=1), RULES) is False  # idempotent: nothing changes
    assert r.completed_at == NOW


def test_the_completed_event_carries_coded_facts_only():
    r = ready()
    r.complete(NOW, RULES)
    event = r.completed_event(RULES)
    text = event.model_dump_json()
    assert event.template_id == "ipt-standard" and event.focus.primary == "role_dispute"
    assert [b.instrument for b in event.baseline_scores] == ["phq9"] and event.risk_review is None
    for free_text in ("conflict with partner", "Sam", "argues about money", "moved city"):
        assert free_text not in text


def test_consent_to_the_referrer_summary_is_not_given_unless_recorded():
    r = ready()
    assert r.consent.share_outcomes_with_referrer is False  # the consent step's default
    r.complete(NOW, RULES)
    assert r.completed_event(RULES).share_outcomes_with_referrer is False


def test_consent_to_the_referrer_summary_travels_on_the_completed_event():
    r = ready()
    r.record_consent(commands.RecordConsent(given=True, method="written", share_outcomes_with_referrer=True),
                     "ic-1", NOW)
    r.complete(NOW, RULES)
    event = r.completed_event(RULES)
    assert event.share_outcomes_with_referrer is True
    # A record from before the field existed reads as not given (compatible: optional, default false).
    old = event.model_dump(mode="json")
    del old["share_outcomes_with_referrer"]
    assert type(event).model_validate(old).share_outcomes_with_referrer is False


def test_consent_to_the_referrer_summary_is_a_strict_boolean():
    with pytest.raises(ValueError):
        commands.RecordConsent(given=True, method="written", share_outcomes_with_referrer="yes")


# ---- the safety gate (PHQ-9 item 9 > 0) --------------------------------------------------

def review(decision="proceed", at=None, note=None):
    return commands.RecordRiskReview(decision=decision, reviewed_at=at, note=note)


def test_item_9_blocks_completion_until_a_risk_review():
    r = ready(phq9=PHQ9_ITEM9)
    assert r.risk_review_required(RULES) and r.missing_for_completion(RULES) == ["risk_review"]
    with pytest.raises(Conflict) as e:
        r.complete(NOW, RULES)
    assert e.value.extra["missing"] == ["risk_review"]
    r.record_risk_review(review(), RULES, "ic-7", NOW)
    assert r.missing_for_completion(RULES) == []
    r.complete(NOW, RULES)
    summary = r.completed_event(RULES).risk_review
    assert (summary.decision, summary.reviewed_at) == ("proceed", NOW)


def test_the_review_records_who_and_when():
    r = ready(phq9=PHQ9_ITEM9)
    r.record_risk_review(review(at=T0 + timedelta(minutes=30)), RULES, "ic-7", NOW)
    [rv] = r.risk_reviews
    assert (rv.reviewed_by, rv.reviewed_at, rv.recorded_at, rv.decision) == ("ic-7", T0 + timedelta(minutes=30), NOW, "proceed")


def test_a_review_before_the_positive_answer_does_not_clear_it():
    r = ready(phq9=PHQ9_ITEM9)  # administered at T0
    r.record_risk_review(review(at=T0 - timedelta(minutes=1)), RULES, "ic-7", NOW)
    assert r.missing_for_completion(RULES) == ["risk_review"]


def test_a_new_positive_answer_needs_a_new_review():
    r = ready(phq9=PHQ9_ITEM9)
    r.record_risk_review(review(at=T0 + timedelta(minutes=5)), RULES, "ic-7", NOW)
    r.record_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_ITEM9,
                                              administered_at=T0 + timedelta(minutes=10)), NOW)
    assert r.missing_for_completion(RULES) == ["risk_review"]


def test_no_review_is_needed_when_item_9_is_zero():
    r = ready(phq9=PHQ9_OK)
    assert not r.risk_review_required(RULES) and r.missing_for_completion(RULES) == []


def test_a_crisis_referral_decision_declines():
    r = ready(phq9=PHQ9_ITEM9)
    r.record_risk_review(review("decline_crisis_referral"), RULES, "ic-7", NOW)
    assert r.status == Status.declined and r.decline_reasons == ("crisis_referral",)
    with pytest.raises(Conflict):
        r.complete(NOW, RULES)


def test_a_review_from_the_future_is_refused():
    r = ready(phq9=PHQ9_ITEM9)
    with pytest.raises(Invalid) as e:
        r.record_risk_review(review(at=NOW + timedelta(seconds=1)), RULES, "ic-7", NOW)
    assert e.value.field == "reviewed_at" and r.risk_reviews == []


def test_the_review_flags_are_data():
    rules = RULES.model_copy(update={"risk_review_flags": ()})
    assert not ready(phq9=PHQ9_ITEM9).risk_review_required(rules)


# ---- declining by hand -------------------------------------------------------------------

def test_decline_with_a_configured_reason():
    r = referral()
    assert r.decline("withdrawn", RULES, NOW) is True
    assert (r.status, r.decline_reasons, r.declined_at) == (Status.declined, ("withdrawn",), NOW)
    assert r.decline("withdrawn", RULES, NOW) is False  # the same decline again: nothing new
    with pytest.raises(Conflict):
        r.decline("referred_elsewhere", RULES, NOW)


def test_decline_reasons_are_coded_and_known():
    with pytest.raises(Invalid) as e:
        referral().decline("excluded_active_psychosis", RULES, NOW)
    assert e.value.field == "reason_code"


def test_a_completed_intake_cannot_be_declined():
    r = ready()
    r.complete(NOW, RULES)
    with pytest.raises(Conflict):
        r.decline("withdrawn", RULES, NOW)


# ---- erasure -----------------------------------------------------------------------------

def test_erasure_removes_free_text_and_keeps_coded_facts():
    r = ready(phq9=PHQ9_ITEM9)
    r.record_risk_review(review(note="has a safety plan with sister"), RULES, "ic-7", NOW)
    r.erase_personal_text(NOW)
    assert r.focus.rationale is None and r.focus.primary == "role_dispute"
    assert r.inventory.notes is None
    assert [(p.label, p.notes, p.closeness, p.role) for p in r.inventory.people] == [(None, None, 1, "partner")]
    assert [rv.note for rv in r.risk_reviews] == [None] and r.personal_text_erased_at == NOW
    assert r.missing_for_completion(RULES) == []  # an erased referral can still be completed


def test_inventory_labels_and_notes_are_free_text_held_only_in_intake():
    inv = inventory()
    assert inv.people[0].label == "Sam" and inv.notes == "moved city last year"
    r = referral()
    r.record_inventory(inv, "ic-1", NOW)
    r.record_availability(AVAILABILITY, 50)
    assert r.inventory.recorded_by == "ic-1"
