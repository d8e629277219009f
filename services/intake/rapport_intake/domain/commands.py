"""Intake's commands: what a caller asks for.

Two layers, both here:

- the bodies (``OpenReferral``, ``RecordConsent``, ...): what a caller sends, validated at the edge
  (HTTP) by these models; the referral's methods take them. Shape rules live here (types, ranges,
  lengths); rules that need the referral or configuration (secondary ≠ primary, a slot long enough
  for a session, known template, instrument scoring) live in ``model`` so they are unit-tested
  without HTTP;
- the commands the message bus handles (``...Command``, at the end): a body plus the referral it
  is for and the ``Actor`` who asks; one handler each in ``service_layer/handlers.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from rapport_shared.contracts import Availability, ProblemArea, StrictPseudonymousId, TargetCondition
from rapport_shared.contracts.base import ClientKey, Code
from rapport_shared.inputs import Integer, Timestamp, WeeklySlotIn, known
from rapport_shared.private_contacts import Channel, LanguageCode, QuietHours

# Free text: personal data (a name, a clinical note). Stays in intake's schema, is erased on
# request, never reaches an event.
FreeText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# What the phone validator accepts, as one pattern for the OpenAPI document: E.164 once the
# separators people write ("+44 7700 900123", "(0)", dots, dashes) are taken out.
_SEP = r"[\s().-]*"
_PHONE_WRITTEN = rf"^{_SEP}\+{_SEP}[1-9](?:{_SEP}[0-9]){{6,14}}{_SEP}$"

# Codes the service's data defines (the OpenAPI document lists them; the domain refuses others).
InstrumentCode = Annotated[Code, known("instruments")]
TemplateId = Annotated[Code, known("templates")]
ExclusionCode = Annotated[Code, known("exclusions")]
DeclineReason = Annotated[Code, known("decline_reasons")]
# Listed as the IANA zones in the document; the model checks it (``check_timezone``, naming the field).
ZoneName = Annotated[str, known("timezones")]


class Body(BaseModel):
    """What a caller sends: unknown fields refused, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenReferral(Body):
    person_id: StrictPseudonymousId = Field(
        description="pseudonymous person id from the caller's system: an opaque prefix, '-' or '_', then random or "
                    "keyed-hash characters, e.g. P- + base32(HMAC-SHA256(org secret, local patient number))[:16] "
                    "(docs/privacy.md). Refused (422) when it looks like a phone number, an e-mail address, a date, "
                    "a national or medical record number")
    referral_source: Code = Field(description="coded source, e.g. gp, self, partner-clinic")
    target_condition: TargetCondition
    client_referral_id: ClientKey | None = Field(
        default=None, description="the caller's id for this referral (idempotency key): sending the same request"
                                  " again answers 200 with the referral it opened; other content under it is a 409")


class ConsentMethod(StrEnum):
    verbal = "verbal"
    written = "written"
    electronic = "electronic"


class RecordConsent(Body):
    given: StrictBool = Field(description="consent to IPT and to processing the intake data")
    method: ConsentMethod
    share_outcomes_with_referrer: StrictBool = Field(
        default=False, description="the end-of-course outcome summary may go to the referrer (domain.md 4);"
                                   " not given unless true. Carried on rapport.intake.completed.v1")


class ContactQuietHours(QuietHours):
    """Quiet hours as a caller sends them: ``timezone`` one of the IANA zones."""

    timezone: ZoneName = Field(description="IANA time zone, e.g. Europe/London")


class RecordContact(Body):
    """Contact details and channel preferences: personal data (intake's schema and the private topic only)."""

    name: ShortText | None = Field(default=None, description="how to address the person")
    email: str | None = Field(default=None, max_length=254, json_schema_extra={"pattern": _EMAIL.pattern})
    phone: str | None = Field(default=None, description="international form, e.g. +44 7700 900123",
                              json_schema_extra={"pattern": _PHONE_WRITTEN})
    channel_consent: dict[Channel, StrictBool] = Field(default_factory=dict, description="consent to each channel")
    preferred_channel: Channel | None = None
    quiet_hours: ContactQuietHours | None = None
    language: LanguageCode | None = Field(default=None, description="ISO 639 code for messages, e.g. en, es;"
                                                                    " none = the notifier's default")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not _EMAIL.match(v):
            raise ValueError("not an e-mail address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None:
            return v
        compact = re.sub(r"[\s().-]", "", v)
        if not _E164.match(compact):
            raise ValueError("must be an international number, e.g. +447700900123")
        return compact


# Bounds on what one request may carry (issue #11): more is never an intake, and an unbounded list
# once made a 1.3 MB event that no topic would take.
MAX_WEEKLY_SLOTS = 42  # seven days × six windows a day
MAX_ANSWERS = 100      # the longest catalogue instrument has far fewer items
MAX_EXCLUSIONS = 50


class RecordAvailability(Availability):
    """The patient's weekly availability, bounded (the event contract's ``Availability`` is not)."""

    timezone: ZoneName = Field(description="IANA time zone, e.g. Europe/London")
    slots: list[WeeklySlotIn] = Field(min_length=1, max_length=MAX_WEEKLY_SLOTS,
                                      description=f"weekly windows, at most {MAX_WEEKLY_SLOTS}")


class SubmitBaseline(Body):
    instrument: InstrumentCode = Field(description="instrument code in the catalogue, e.g. phq9")
    answers: dict[int, Integer] = Field(description="questionnaire item number → answer", max_length=MAX_ANSWERS,
                                        json_schema_extra={"propertyNames": {"pattern": "^[0-9]{1,9}$"}})
    administered_at: Timestamp | None = Field(default=None, description="when answered; default now")


class InventoryPerson(Body):
    """One key relationship (domain.md 2: who, closeness 1–3 as in the closeness circle,
    support, conflict, changes near symptom onset)."""

    role: Code = Field(description="coded relationship, e.g. partner, mother, friend, colleague")
    label: ShortText | None = Field(default=None, description="how the patient names them (free text, erasable)")
    closeness: Integer = Field(ge=1, le=3, description="closeness circle: 1 = innermost, 3 = outermost")
    support: StrictBool = Field(description="a source of support")
    conflict: StrictBool = Field(description="in conflict or dispute")
    change_near_onset: StrictBool = Field(description="the relationship changed near symptom onset (loss, start, end, role change)")
    notes: FreeText | None = None


class RecordInventory(Body):
    people: list[InventoryPerson] = Field(min_length=1, max_length=50)
    notes: FreeText | None = None


class RecordFocus(Body):
    # The document says what ``model.check_focus`` refuses: a secondary equal to the primary.
    model_config = ConfigDict(json_schema_extra={"not": {"anyOf": [
        {"properties": {"primary": {"const": a.value}, "secondary": {"const": a.value}},
         "required": ["primary", "secondary"]} for a in ProblemArea]}})

    primary: ProblemArea
    secondary: ProblemArea | None = Field(default=None, description="another area than the primary")
    rationale: FreeText = Field(description="why this area (free text, erasable)")


class ChooseTemplate(Body):
    template_id: TemplateId


class AssignClinician(Body):
    clinician_id: StrictPseudonymousId


class RecordEligibility(Body):
    """The clinician's screening against the configured exclusion list, decided against the
    chosen template. Age in whole years at assessment (never a birth date)."""

    age_years: Integer = Field(ge=0, le=130)
    exclusions: list[ExclusionCode] = Field(default_factory=list, max_length=MAX_EXCLUSIONS,
                                            description="exclusion criteria present (codes); empty = none")


class RiskDecision(StrEnum):
    proceed = "proceed"
    decline_crisis_referral = "decline_crisis_referral"


class RecordRiskReview(Body):
    decision: RiskDecision
    reviewed_at: Timestamp | None = Field(default=None, description="when the review happened; default now")
    note: FreeText | None = None


class Decline(Body):
    reason_code: DeclineReason


class CompleteIntake(Body):
    """Complete the intake. Every part is optional: parts given here are recorded first, exactly
    as their own endpoints would (a partner form can send a whole intake in one call)."""

    consent: RecordConsent | None = None
    contact: RecordContact | None = None
    baseline: list[SubmitBaseline] = Field(default_factory=list, max_length=20)
    inventory: RecordInventory | None = None
    focus: RecordFocus | None = None
    template_id: TemplateId | None = None
    clinician_id: StrictPseudonymousId | None = None
    availability: RecordAvailability | None = None
    eligibility: RecordEligibility | None = None
    risk_review: RecordRiskReview | None = None


# ---- who asks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Actor:
    """The caller a command acts for (from the token): audited with every change and read."""

    sub: str
    roles: tuple[str, ...] = ()
    org: str | None = None  # the organisation the actor acted for (token claim ``org``)


# ---- the commands the message bus handles -----------------------------------------------

@dataclass(frozen=True, kw_only=True)
class OpenReferralCommand:
    actor: Actor
    body: OpenReferral


@dataclass(frozen=True, kw_only=True)
class ReferralCommand:
    """A command on one referral (loaded locked, changed, saved, audited in one transaction)."""

    episode_id: UUID
    actor: Actor


@dataclass(frozen=True, kw_only=True)
class RecordConsentCommand(ReferralCommand):
    body: RecordConsent


@dataclass(frozen=True, kw_only=True)
class RecordContactCommand(ReferralCommand):
    body: RecordContact


@dataclass(frozen=True, kw_only=True)
class SubmitBaselineCommand(ReferralCommand):
    body: SubmitBaseline


@dataclass(frozen=True, kw_only=True)
class RecordInventoryCommand(ReferralCommand):
    body: RecordInventory


@dataclass(frozen=True, kw_only=True)
class RecordFocusCommand(ReferralCommand):
    body: RecordFocus


@dataclass(frozen=True, kw_only=True)
class ChooseTemplateCommand(ReferralCommand):
    body: ChooseTemplate


@dataclass(frozen=True, kw_only=True)
class AssignClinicianCommand(ReferralCommand):
    body: AssignClinician


@dataclass(frozen=True, kw_only=True)
class RecordAvailabilityCommand(ReferralCommand):
    body: RecordAvailability


@dataclass(frozen=True, kw_only=True)
class RecordEligibilityCommand(ReferralCommand):
    body: RecordEligibility


@dataclass(frozen=True, kw_only=True)
class RecordRiskReviewCommand(ReferralCommand):
    body: RecordRiskReview


@dataclass(frozen=True, kw_only=True)
class CompleteIntakeCommand(ReferralCommand):
    body: CompleteIntake


@dataclass(frozen=True, kw_only=True)
class DeclineCommand(ReferralCommand):
    body: Decline


@dataclass(frozen=True, kw_only=True)
class ErasePersonCommand:
    """Erase what the actor's organisation holds about a person (contact details, free text)."""

    person_id: str
    actor: Actor


@dataclass(frozen=True, kw_only=True)
class RepublishContactsCommand:
    """Queue every stored contact for the private topic again (after a key rotation)."""

    actor: Actor
