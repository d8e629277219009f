"""Builders for intake's unit tests (pure: no I/O)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from rapport_shared.contracts import Availability, TargetCondition
from rapport_intake.domain import commands
from rapport_intake.domain.model import Referral
from rapport_intake.domain.rules import load_rules

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
RULES = load_rules()
PHQ9_OK = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}
PHQ9_ITEM9 = {**PHQ9_OK, 9: 1}
AVAILABILITY = Availability(timezone="Europe/London", slots=[{"weekday": 2, "start": "09:00", "end": "12:00"}])


def referral(condition: TargetCondition = TargetCondition.depression) -> Referral:
    return Referral(episode_id=uuid.uuid4(), person_id="P-1", referral_source="gp", target_condition=condition,
                    created_at=T0)


def inventory() -> commands.RecordInventory:
    return commands.RecordInventory(people=[
        commands.InventoryPerson(role="partner", label="Sam", closeness=1, support=False, conflict=True,
                                 change_near_onset=True, notes="argues about money"),
    ], notes="moved city last year")


def focus(**over) -> commands.RecordFocus:
    return commands.RecordFocus(**{"primary": "role_dispute", "rationale": "conflict with partner", **over})


def ready(r: Referral | None = None, *, phq9=PHQ9_OK, template="ipt-standard", age=30, exclusions=()) -> Referral:
    """A referral with every part recorded (eligibility last, as it needs the template)."""
    r = r or referral()
    now = T0 + timedelta(hours=1)
    r.record_consent(commands.RecordConsent(given=True, method="written"), "ic-1", now)
    r.record_baseline(commands.SubmitBaseline(instrument="phq9", answers=phq9, administered_at=T0), now)
    r.record_inventory(inventory(), "ic-1", now)
    r.record_focus(focus(), "ic-1", now)
    r.choose_template(template, RULES)
    r.assign_clinician("clin-1")
    r.record_availability(AVAILABILITY, 50)
    r.record_eligibility(commands.RecordEligibility(age_years=age, exclusions=list(exclusions)), RULES, "ic-1", now)
    return r
