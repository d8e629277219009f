"""Intake's recording rules and every refusal, without I/O (domain.md 1–3, issue 3)."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from intake_builders import AVAILABILITY, PHQ9_OK, RULES, T0, focus, inventory, ready, referral
from rapport_shared.contracts import Availability
from rapport_shared.http.errors import Conflict, Invalid
from rapport_intake.domain import commands
from rapport_intake.domain.model import check_availability, check_focus, contact_record, field_prefix, score_baseline

pytestmark = pytest.mark.unit
NOW = T0 + timedelta(hours=1)


def loc(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"])


# ---- baseline questionnaires (scored with the shared catalogue) --------------------------

def test_baseline_is_scored_with_the_catalogue():
    s = score_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK, administered_at=T0), NOW)
    assert (s.total, s.band, s.caseness, s.flags) == (18, "moderately_severe", True, [])


def test_baseline_defaults_administered_at_to_now():
    assert score_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK), NOW).administered_at == NOW


def test_item_9_positive_is_flagged():
    s = score_baseline(commands.SubmitBaseline(instrument="phq9", answers={**PHQ9_OK, 9: 2}), NOW)
    assert s.flags == ["safety_item_positive"]


@pytest.mark.parametrize("instrument,answers,field,reason", [
    ("phq10", PHQ9_OK, "instrument", "unknown instrument"),
    ("phq9", {k: v for k, v in PHQ9_OK.items() if k != 9}, "answers.item_9", "missing"),
    ("phq9", {**PHQ9_OK, 10: 0}, "answers.item_10", "PHQ-9 has no item 10"),
    ("phq9", {**PHQ9_OK, 3: 4}, "answers.item_3", "must be between 0 and 3, got 4"),
    ("phq9", {**PHQ9_OK, 3: -1}, "answers.item_3", "must be between 0 and 3"),
    ("audit", {**{i: 0 for i in range(1, 9)}, 9: 3, 10: 0}, "answers.item_9", "must be one of 0, 2, 4"),
    ("edeq6", {i: 0 for i in [*range(1, 13), *range(19, 29), 13]}, "answers.item_13", "item 13"),
])
def test_baseline_refusals_name_the_field(instrument, answers, field, reason):
    with pytest.raises(Invalid) as e:
        score_baseline(commands.SubmitBaseline(instrument=instrument, answers=answers), NOW)
    assert e.value.field == field and reason in e.value.message


def test_baseline_from_the_future_is_refused():
    with pytest.raises(Invalid) as e:
        score_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK, administered_at=NOW + timedelta(minutes=1)), NOW)
    assert e.value.field == "administered_at"


def test_baseline_answers_must_be_strict_integers():
    with pytest.raises(ValidationError):
        commands.SubmitBaseline(instrument="phq9", answers={**PHQ9_OK, 1: True})
    with pytest.raises(ValidationError):
        commands.SubmitBaseline(instrument="phq9", answers={**PHQ9_OK, 1: "2"})


def test_baseline_time_must_carry_an_offset():
    with pytest.raises(ValidationError) as e:
        commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK, administered_at="2026-03-02T09:00:00")
    assert loc(e.value) == "administered_at"


def test_resubmitting_an_instrument_replaces_its_baseline():
    r = referral()
    r.record_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK), NOW)
    r.record_baseline(commands.SubmitBaseline(instrument="phq9", answers={i: 0 for i in range(1, 10)}), NOW)
    assert list(r.baseline) == ["phq9"] and r.baseline["phq9"].total == 0


# ---- interpersonal inventory -------------------------------------------------------------

@pytest.mark.parametrize("closeness", [0, 4, -1, "2", 2.5, True])
def test_closeness_outside_1_to_3_is_refused(closeness):
    with pytest.raises(ValidationError) as e:
        commands.RecordInventory(people=[{"role": "friend", "closeness": closeness, "support": True, "conflict": False,
                                          "change_near_onset": False}])
    assert loc(e.value) == "people.0.closeness"


@pytest.mark.parametrize("closeness", [1, 2, 3])
def test_closeness_1_to_3_is_accepted(closeness):
    inv = commands.RecordInventory(people=[{"role": "friend", "closeness": closeness, "support": True,
                                            "conflict": False, "change_near_onset": False}])
    assert inv.people[0].closeness == closeness


def test_inventory_needs_at_least_one_person_and_coded_roles():
    with pytest.raises(ValidationError) as e:
        commands.RecordInventory(people=[])
    assert loc(e.value) == "people"
    with pytest.raises(ValidationError) as e:
        commands.RecordInventory(people=[{"role": "Best Friend", "closeness": 1, "support": True, "conflict": False,
                                          "change_near_onset": False}])
    assert loc(e.value) == "people.0.role"


# ---- provisional focus -------------------------------------------------------------------

@pytest.mark.parametrize("area", ["grief", "role_dispute", "role_transition", "interpersonal_deficits"])
def test_the_four_problem_areas_are_accepted(area):
    assert focus(primary=area).primary == area


def test_a_focus_that_is_not_one_of_the_four_is_refused():
    with pytest.raises(ValidationError) as e:
        focus(primary="loneliness")
    assert loc(e.value) == "primary"
    with pytest.raises(ValidationError) as e:
        focus(secondary="sensitivity")
    assert loc(e.value) == "secondary"


def test_secondary_equal_to_primary_is_refused():
    with pytest.raises(Invalid) as e:
        check_focus(focus(primary="grief", secondary="grief"))
    assert e.value.field == "secondary" and "differ" in e.value.message


def test_secondary_is_optional_and_can_be_switched_off():
    check_focus(focus())
    check_focus(focus(secondary="grief"))
    with pytest.raises(Invalid) as e:
        check_focus(focus(secondary="grief"), allow_secondary=False)
    assert e.value.field == "secondary"


def test_focus_needs_a_rationale():
    with pytest.raises(ValidationError) as e:
        commands.RecordFocus(primary="grief", rationale="   ")
    assert loc(e.value) == "rationale"


def test_nested_fields_are_named_from_the_callers_body():
    with pytest.raises(Invalid) as e, field_prefix("focus"):
        check_focus(focus(primary="grief", secondary="grief"))
    assert e.value.field == "focus.secondary"


# ---- weekly availability -----------------------------------------------------------------

def avail(*slots, tz="Europe/London") -> Availability:
    return Availability(timezone=tz, slots=[{"weekday": d, "start": s, "end": e} for d, s, e in slots])


def test_a_slot_as_long_as_a_session_holds_it():
    check_availability(avail((1, "09:00", "09:50")), 50)
    check_availability(avail((1, "09:00", "09:30"), (3, "18:00", "19:00")), 50)


def test_availability_that_cannot_hold_a_weekly_session_is_refused():
    with pytest.raises(Invalid) as e:
        check_availability(avail((1, "09:00", "09:49"), (2, "10:00", "10:30")), 50)
    assert e.value.field == "slots" and "50-minute" in e.value.message


def test_session_length_is_a_setting():
    with pytest.raises(Invalid):
        check_availability(avail((1, "09:00", "09:50")), 60)


def test_a_slot_ending_before_it_starts_is_refused():
    with pytest.raises(Invalid) as e:
        check_availability(avail((1, "09:00", "12:00"), (2, "22:00", "01:00")), 50)
    assert e.value.field == "slots.1.end"


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd"])
def test_an_unknown_time_zone_is_refused(tz):
    with pytest.raises(Invalid) as e:
        check_availability(avail((1, "09:00", "12:00"), tz=tz), 50)
    assert e.value.field == "timezone"


@pytest.mark.parametrize("slot,field", [({"weekday": 8, "start": "09:00", "end": "10:00"}, "slots.0.weekday"),
                                        ({"weekday": 1, "start": "9am", "end": "10:00"}, "slots.0.start")])
def test_malformed_slots_are_refused(slot, field):
    with pytest.raises(ValidationError) as e:
        Availability(timezone="Europe/London", slots=[slot])
    assert loc(e.value) == field


def test_availability_needs_a_slot():
    with pytest.raises(ValidationError):
        Availability(timezone="Europe/London", slots=[])


# ---- template and clinician --------------------------------------------------------------

@pytest.mark.parametrize("template", ["ipt-standard", "ipt-12", "ipt-brief", "ipt-a", "ipt-group", "ipt-ed"])
def test_the_domain_templates_are_known(template):
    r = referral()
    r.choose_template(template, RULES)
    assert r.template_id == template


def test_an_unknown_template_is_refused():
    r = referral()
    with pytest.raises(Invalid) as e:
        r.choose_template("ipt-mega", RULES)
    assert e.value.field == "template_id" and r.template_id is None


def test_clinician_id_must_be_pseudonymous():
    with pytest.raises(ValidationError):
        commands.AssignClinician(clinician_id="dr.jones@clinic.org")


# ---- consent -----------------------------------------------------------------------------

def test_consent_records_who_and_when():
    r = referral()
    r.record_consent(commands.RecordConsent(given=True, method="verbal"), "ic-9", NOW)
    assert (r.consent.given, r.consent.recorded_by, r.consent.recorded_at) == (True, "ic-9", NOW)


def test_consent_must_be_an_explicit_boolean():
    with pytest.raises(ValidationError):
        commands.RecordConsent(given="yes", method="written")


# ---- contact details ---------------------------------------------------------------------

def contact(**over) -> commands.RecordContact:
    return commands.RecordContact(**{"name": "Ada Lovelace", "email": "ada@example.org", "phone": "+44 7700 900123",
                                     "channel_consent": {"email": True, "sms": False}, "preferred_channel": "email",
                                     **over})


def test_contact_is_normalised_for_the_private_topic():
    c = contact_record(contact(), "P-1", NOW)
    assert (c.person_id, c.phone, c.preferred_channel, c.updated_at) == ("P-1", "+447700900123", "email", NOW)


@pytest.mark.parametrize("over,field", [({"email": "not-an-address"}, "email"), ({"phone": "07700 900123"}, "phone"),
                                        ({"phone": "+44 call me"}, "phone"), ({"preferred_channel": "pigeon"}, "preferred_channel")])
def test_malformed_contact_details_are_refused(over, field):
    with pytest.raises(ValidationError) as e:
        contact(**over)
    assert loc(e.value) == field


def test_channel_consent_needs_the_address_and_preferred_channel_needs_consent():
    with pytest.raises(Invalid) as e:
        contact_record(contact(email=None), "P-1", NOW)
    assert e.value.field == "channel_consent.email"
    with pytest.raises(Invalid) as e:
        contact_record(contact(preferred_channel="sms"), "P-1", NOW)
    assert e.value.field == "preferred_channel"


def test_quiet_hours_need_a_real_time_zone():
    with pytest.raises(Invalid) as e:
        contact_record(contact(quiet_hours={"start": "21:00", "end": "08:00", "timezone": "Nowhere/Land"}), "P-1", NOW)
    assert e.value.field == "quiet_hours.timezone"
    ok = contact_record(contact(quiet_hours={"start": "21:00", "end": "08:00", "timezone": "Europe/London"}), "P-1", NOW)
    assert ok.quiet_hours.start == "21:00"


# ---- an ended referral no longer changes -------------------------------------------------

@pytest.mark.parametrize("end", ["completed", "declined"])
def test_steps_on_an_ended_referral_are_refused(end):
    r = ready()
    if end == "completed":
        r.complete(NOW, RULES)
    else:
        r.decline("withdrawn", RULES, NOW)
    for step in (lambda: r.record_consent(commands.RecordConsent(given=True, method="written"), "x", NOW),
                 lambda: r.record_baseline(commands.SubmitBaseline(instrument="phq9", answers=PHQ9_OK), NOW),
                 lambda: r.record_inventory(inventory(), "x", NOW), lambda: r.record_focus(focus(), "x", NOW),
                 lambda: r.choose_template("ipt-12", RULES), lambda: r.assign_clinician("c-2"),
                 lambda: r.record_availability(AVAILABILITY, 50)):
        with pytest.raises(Conflict):
            step()
