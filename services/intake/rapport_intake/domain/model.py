"""Intake's domain: a referral, what it records, and the rules that end it (pure, no I/O).

A referral is ``open`` until it is ``completed`` (eligible, everything recorded; a course may be
planned) or ``declined`` (excluded, crisis referral or withdrawn; never a course). Both ends are
final. Every refusal raises before anything changes, so a handler that calls these methods
before writing never half-writes.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Iterator
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from rapport_shared.contracts import (
    Availability,
    BaselineScore,
    Focus,
    IntakeCompletedV1,
    IntakeDeclinedV1,
    TargetCondition,
)
from rapport_shared.contracts.intake import RiskReviewSummary
from rapport_shared.errors import Conflict, Invalid
from rapport_shared.instruments import AnswerError, UnknownInstrument, score
from rapport_shared.private_contacts import ContactRecordV1

from . import commands
from .rules import IntakeRules


class Status(StrEnum):
    open = "open"
    completed = "completed"
    declined = "declined"


# Recorded facts: the caller's input plus who recorded it and when (clinical accountability).
class Consent(commands.RecordConsent):
    recorded_by: str
    recorded_at: datetime


class Inventory(commands.RecordInventory):
    recorded_by: str
    recorded_at: datetime


class ProvisionalFocus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    primary: commands.ProblemArea
    secondary: commands.ProblemArea | None = None
    rationale: str | None  # None only after erasure
    recorded_by: str
    recorded_at: datetime

    def as_contract(self) -> Focus:
        return Focus(primary=self.primary, secondary=self.secondary)


class EligibilityRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    age_years: int
    exclusions: tuple[str, ...]
    template_id: str  # eligibility is decided against this template
    eligible: bool
    reasons: tuple[str, ...]  # reason codes, configured order; empty when eligible
    assessed_by: str
    assessed_at: datetime


class RiskReview(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    decision: commands.RiskDecision
    reviewed_by: str
    reviewed_at: datetime
    note: str | None = None
    recorded_at: datetime


@contextmanager
def field_prefix(prefix: str) -> Iterator[None]:
    """Name fields from the caller's point of view when a part is nested in a larger body."""
    try:
        yield
    except Invalid as exc:
        exc.field = f"{prefix}.{exc.field}" if exc.field else prefix
        raise


# ---- rules that need no referral ---------------------------------------------------------

def check_focus(focus: commands.RecordFocus, *, allow_secondary: bool = True) -> None:
    if focus.secondary is None:
        return
    if not allow_secondary:
        raise Invalid("this programme records no secondary focus area", field="secondary")
    if focus.secondary == focus.primary:
        raise Invalid("secondary focus area must differ from the primary", field="secondary")


def check_timezone(name: str, field: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r} (an IANA name, e.g. Europe/London)", field=field) from None


def check_availability(availability: Availability, session_minutes: int) -> None:
    """The patient must be able to attend a weekly session: a slot at least one session long."""
    check_timezone(availability.timezone, "timezone")
    longest = timedelta(0)
    for i, slot in enumerate(availability.slots):
        start, end = time.fromisoformat(slot.start), time.fromisoformat(slot.end)
        if end <= start:
            raise Invalid("must be after start (a slot ends on the day it starts)", field=f"slots.{i}.end")
        longest = max(longest, datetime.combine(date.min, end) - datetime.combine(date.min, start))
    if longest < timedelta(minutes=session_minutes):
        raise Invalid(f"no slot can hold a weekly {session_minutes}-minute session", field="slots")


def contact_record(cmd: commands.RecordContact, person_id: str, now: datetime) -> ContactRecordV1:
    """A person's contact details as the private topic carries them; consent to a channel needs
    its address, and the preferred channel needs consent."""
    addresses = {"email": cmd.email, "sms": cmd.phone}
    for channel, consented in cmd.channel_consent.items():
        if consented and not addresses[channel.value]:
            what = "an e-mail address" if channel.value == "email" else "a phone number"
            raise Invalid(f"consent to {channel.value} needs {what}", field=f"channel_consent.{channel.value}")
    if cmd.preferred_channel is not None and not cmd.channel_consent.get(cmd.preferred_channel):
        raise Invalid("the preferred channel needs the person's consent to it", field="preferred_channel")
    if cmd.quiet_hours is not None:
        check_timezone(cmd.quiet_hours.timezone, "quiet_hours.timezone")
        if cmd.quiet_hours.start == cmd.quiet_hours.end:
            raise Invalid("must differ from start", field="quiet_hours.end")
    return ContactRecordV1(person_id=person_id, name=cmd.name, email=cmd.email, phone=cmd.phone,
                           channel_consent=dict(cmd.channel_consent), preferred_channel=cmd.preferred_channel,
                           quiet_hours=cmd.quiet_hours, language=cmd.language, updated_at=now)


def score_baseline(cmd: commands.SubmitBaseline, now: datetime) -> BaselineScore:
    """Score one baseline questionnaire with the shared catalogue; refuse anything it refuses."""
    administered_at = cmd.administered_at or now
    if administered_at > now:
        raise Invalid("is in the future", field="administered_at")
    try:
        result = score(cmd.instrument, cmd.answers)
    except UnknownInstrument:
        raise Invalid(f"unknown instrument {cmd.instrument!r}", field="instrument") from None
    except AnswerError as exc:
        raise Invalid(exc.reason, field=exc.field) from None
    return BaselineScore(
        instrument=result.instrument, answers=dict(cmd.answers), total=float(result.total), band=result.band,
        caseness=result.caseness, flags=list(result.flags), administered_at=administered_at,
    )


def assess_eligibility(screening: commands.RecordEligibility, template_id: str, rules: IntakeRules) -> tuple[str, ...]:
    """Reason codes that exclude this person from this template (empty = eligible)."""
    for i, code in enumerate(screening.exclusions):
        if rules.exclusion(code) is None:
            known = ", ".join(e.code for e in rules.exclusions)
            raise Invalid(f"unknown exclusion criterion {code!r}; known: {known}", field=f"exclusions.{i}")
    present = set(screening.exclusions)
    reasons = [e.reason_code for e in rules.exclusions if e.code in present and e.applies(template_id)]
    age_rule = rules.templates[template_id].age
    if age_rule is not None and not age_rule.admits(screening.age_years):
        reasons.append(rules.age_reason_code)
    return tuple(reasons)


# ---- the referral ------------------------------------------------------------------------

@dataclass
class Referral:
    episode_id: UUID
    person_id: str
    referral_source: str
    target_condition: TargetCondition
    created_at: datetime
    status: Status = Status.open
    consent: Consent | None = None
    baseline: dict[str, BaselineScore] = field(default_factory=dict)
    inventory: Inventory | None = None
    focus: ProvisionalFocus | None = None
    template_id: str | None = None
    clinician_id: str | None = None
    availability: Availability | None = None
    eligibility: EligibilityRecord | None = None
    risk_reviews: list[RiskReview] = field(default_factory=list)
    completed_at: datetime | None = None
    completed_event_id: UUID | None = None
    declined_at: datetime | None = None
    decline_reasons: tuple[str, ...] = ()
    declined_event_id: UUID | None = None
    personal_text_erased_at: datetime | None = None
    # Ownership (who may see what): the organisation that opened it (None only for rows written
    # before ownership was recorded) and the intake clinician who opened it (None when an admin
    # or a partner system did).
    organisation_id: str | None = None
    intake_clinician_id: str | None = None

    # -- state ---------------------------------------------------------------------------
    def ensure_open(self) -> None:
        if self.status == Status.completed:
            raise Conflict("the intake is completed; its record can no longer change", field="status", episode_status=self.status.value)
        if self.status == Status.declined:
            raise Conflict("the referral was declined and can never start a course", field="status",
                           episode_status=self.status.value, decline_reasons=list(self.decline_reasons))

    # -- recording -----------------------------------------------------------------------
    def record_consent(self, cmd: commands.RecordConsent, by: str, at: datetime) -> None:
        self.ensure_open()
        self.consent = Consent(**cmd.model_dump(), recorded_by=by, recorded_at=at)

    def record_baseline(self, cmd: commands.SubmitBaseline, now: datetime) -> BaselineScore:
        self.ensure_open()
        scored = score_baseline(cmd, now)
        self.baseline[scored.instrument] = scored  # a re-administered questionnaire replaces the earlier one
        return scored

    def record_inventory(self, cmd: commands.RecordInventory, by: str, at: datetime) -> None:
        self.ensure_open()
        self.inventory = Inventory(**cmd.model_dump(), recorded_by=by, recorded_at=at)

    def record_focus(self, cmd: commands.RecordFocus, by: str, at: datetime, *, allow_secondary: bool = True) -> None:
        self.ensure_open()
        check_focus(cmd, allow_secondary=allow_secondary)
        self.focus = ProvisionalFocus(primary=cmd.primary, secondary=cmd.secondary, rationale=cmd.rationale,
                                      recorded_by=by, recorded_at=at)

    def choose_template(self, template_id: str, rules: IntakeRules) -> None:
        self.ensure_open()
        if template_id not in rules.templates:
            raise Invalid(f"unknown template {template_id!r}; known: {', '.join(rules.templates)}", field="template_id")
        if self.eligibility is not None and self.eligibility.template_id != template_id:
            # Eligibility was decided for another template (age rules, template exclusions differ).
            self.eligibility = None
        self.template_id = template_id

    def assign_clinician(self, clinician_id: str) -> None:
        self.ensure_open()
        self.clinician_id = clinician_id

    def record_availability(self, availability: Availability, session_minutes: int) -> None:
        self.ensure_open()
        check_availability(availability, session_minutes)
        self.availability = availability

    def record_eligibility(self, cmd: commands.RecordEligibility, rules: IntakeRules, by: str, at: datetime) -> bool:
        """Decide eligibility against the chosen template. Returns True if this declined the referral."""
        self.ensure_open()
        if self.template_id is None:
            raise Conflict("choose the template first: eligibility is decided against it", field="template_id",
                           missing=["template_id"])
        reasons = assess_eligibility(cmd, self.template_id, rules)
        self.eligibility = EligibilityRecord(
            age_years=cmd.age_years, exclusions=tuple(cmd.exclusions), template_id=self.template_id,
            eligible=not reasons, reasons=reasons, assessed_by=by, assessed_at=at,
        )
        if reasons:
            self._decline(reasons, at)
            return True
        return False

    def record_risk_review(self, cmd: commands.RecordRiskReview, rules: IntakeRules, by: str, now: datetime) -> bool:
        """Record a clinician's risk review. Returns True if its decision declined the referral."""
        self.ensure_open()
        reviewed_at = cmd.reviewed_at or now
        if reviewed_at > now:
            raise Invalid("is in the future", field="reviewed_at")
        self.risk_reviews.append(RiskReview(decision=cmd.decision, reviewed_by=by, reviewed_at=reviewed_at,
                                            note=cmd.note, recorded_at=now))
        if cmd.decision == commands.RiskDecision.decline_crisis_referral:
            self._decline((rules.crisis_reason_code,), now)
            return True
        return False

    # -- safety --------------------------------------------------------------------------
    def flagged_baseline(self, rules: IntakeRules) -> list[BaselineScore]:
        """Baseline answers that need a clinician's risk review (PHQ-9 item 9 > 0)."""
        wanted = set(rules.risk_review_flags)
        return [b for b in self.baseline.values() if wanted & set(b.flags)]

    def risk_review_required(self, rules: IntakeRules) -> bool:
        return bool(self.flagged_baseline(rules))

    def covering_review(self, rules: IntakeRules) -> RiskReview | None:
        """The review that clears completion: 'proceed', made at or after the latest flagged answer."""
        flagged = self.flagged_baseline(rules)
        if not flagged:
            return None
        latest_flag = max(b.administered_at for b in flagged)
        proceeds = [r for r in self.risk_reviews
                    if r.decision == commands.RiskDecision.proceed and r.reviewed_at >= latest_flag]
        return max(proceeds, key=lambda r: r.reviewed_at, default=None)

    # -- ending --------------------------------------------------------------------------
    def missing_for_completion(self, rules: IntakeRules) -> list[str]:
        missing: list[str] = []
        if self.consent is None or not self.consent.given:
            missing.append("consent")
        missing += [f"baseline.{code}" for code in rules.required_baseline[self.target_condition] if code not in self.baseline]
        for name in ("inventory", "focus", "template_id", "clinician_id", "availability", "eligibility"):
            if getattr(self, name) is None:
                missing.append(name)
        if self.risk_review_required(rules) and self.covering_review(rules) is None:
            missing.append("risk_review")
        return missing

    def complete(self, now: datetime, rules: IntakeRules) -> bool:
        """Returns True if this call completed it; False if it already was (idempotent)."""
        if self.status == Status.completed:
            return False
        self.ensure_open()
        missing = self.missing_for_completion(rules)
        if missing:
            raise Conflict(f"the intake is not complete: missing {', '.join(missing)}", field="intake", missing=missing)
        self.status = Status.completed
        self.completed_at = now
        return True

    def decline(self, reason_code: str, rules: IntakeRules, now: datetime) -> bool:
        """Decline by hand (withdrawn, referred elsewhere). Returns False if already declined for it."""
        if reason_code not in rules.decline_reasons:
            raise Invalid(f"unknown decline reason {reason_code!r}; known: {', '.join(rules.decline_reasons)}"
                          " (exclusions are declined by recording eligibility, crisis referral by a risk review)",
                          field="reason_code")
        if self.status == Status.declined and self.decline_reasons[:1] == (reason_code,):
            return False
        self.ensure_open()
        self._decline((reason_code,), now)
        return True

    def _decline(self, reasons: tuple[str, ...], now: datetime) -> None:
        self.status = Status.declined
        self.decline_reasons = reasons
        self.declined_at = now

    # -- erasure -------------------------------------------------------------------------
    def erase_personal_text(self, now: datetime) -> None:
        """Erase free text (rationale, inventory labels and notes, risk review notes); coded facts stay."""
        if self.focus is not None:
            self.focus = self.focus.model_copy(update={"rationale": None})
        if self.inventory is not None:
            people = [p.model_copy(update={"label": None, "notes": None}) for p in self.inventory.people]
            self.inventory = self.inventory.model_copy(update={"people": people, "notes": None})
        self.risk_reviews = [r.model_copy(update={"note": None}) for r in self.risk_reviews]
        self.personal_text_erased_at = now

    # -- events --------------------------------------------------------------------------
    def completed_event(self, rules: IntakeRules) -> IntakeCompletedV1:
        assert self.status == Status.completed and self.focus and self.availability and self.completed_at
        review = self.covering_review(rules)
        return IntakeCompletedV1(
            episode_id=self.episode_id, person_id=self.person_id, target_condition=self.target_condition,
            template_id=self.template_id, focus=self.focus.as_contract(), clinician_id=self.clinician_id,
            availability=self.availability,
            baseline_scores=sorted(self.baseline.values(), key=lambda b: b.instrument),
            referred_at=self.created_at, completed_at=self.completed_at,
            referral_source=self.referral_source,
            risk_review=RiskReviewSummary(decision=review.decision.value, reviewed_at=review.reviewed_at) if review else None,
            organisation_id=self.organisation_id, intake_clinician_id=self.intake_clinician_id,
            share_outcomes_with_referrer=bool(self.consent and self.consent.share_outcomes_with_referrer),
        )

    def declined_event(self) -> IntakeDeclinedV1:
        assert self.status == Status.declined and self.declined_at
        return IntakeDeclinedV1(
            episode_id=self.episode_id, person_id=self.person_id, reason_code=self.decline_reasons[0],
            declined_at=self.declined_at, reason_codes=list(self.decline_reasons), template_id=self.template_id,
            organisation_id=self.organisation_id,
        )
