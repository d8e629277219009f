"""What the HTTP API answers with (documented in the OpenAPI schema), shaped from the domain."""

from __future__ import annotations

from datetime import datetime

from typing import Literal

from pydantic import BaseModel, ConfigDict

from rapport_shared.contracts import Availability, BaselineScore
from rapport_shared.private_contacts import ContactRecordV1

from ..domain.model import Consent, EligibilityRecord, Inventory, ProvisionalFocus, Referral, RiskReview
from ..domain.rules import IntakeRules


class RiskReviewState(BaseModel):
    required: bool
    cleared: bool
    reviews: list[RiskReview]


class ReferralView(BaseModel):
    episode_id: str
    person_id: str
    status: str
    referral_source: str
    target_condition: str
    opened_at: datetime
    consent: Consent | None
    baseline: list[BaselineScore]
    inventory: Inventory | None
    focus: ProvisionalFocus | None
    template_id: str | None
    clinician_id: str | None
    availability: Availability | None
    eligibility: EligibilityRecord | None
    risk_review: RiskReviewState
    missing: list[str]
    completed_at: datetime | None
    completed_event_id: str | None
    declined_at: datetime | None
    decline_reasons: list[str]
    declined_event_id: str | None
    personal_text_erased_at: datetime | None


def referral_view(r: Referral, rules: IntakeRules) -> ReferralView:
    return ReferralView(
        episode_id=str(r.episode_id), person_id=r.person_id, status=r.status.value, referral_source=r.referral_source,
        target_condition=r.target_condition.value, opened_at=r.created_at, consent=r.consent,
        baseline=sorted(r.baseline.values(), key=lambda b: b.instrument), inventory=r.inventory, focus=r.focus,
        template_id=r.template_id, clinician_id=r.clinician_id, availability=r.availability, eligibility=r.eligibility,
        risk_review=RiskReviewState(required=r.risk_review_required(rules),
                                    cleared=r.covering_review(rules) is not None, reviews=r.risk_reviews),
        missing=r.missing_for_completion(rules) if r.status.value == "open" else [],
        completed_at=r.completed_at, completed_event_id=str(r.completed_event_id) if r.completed_event_id else None,
        declined_at=r.declined_at, decline_reasons=list(r.decline_reasons),
        declined_event_id=str(r.declined_event_id) if r.declined_event_id else None,
        personal_text_erased_at=r.personal_text_erased_at,
    )


class ReferralPartnerView(BaseModel):
    """What a partner system gets back (architecture.md "Who may see what"): where the referral
    stands, its ids, what completion still needs and coded facts. Never the risk review, the
    inventory, the focus rationale, baseline answers or contact details."""

    model_config = ConfigDict(extra="forbid")  # a full view never passes for this one
    view: Literal["partner"] = "partner"
    episode_id: str
    person_id: str
    status: str
    referral_source: str
    target_condition: str
    opened_at: datetime
    template_id: str | None
    missing: list[str]
    completed_at: datetime | None
    completed_event_id: str | None
    declined_at: datetime | None
    decline_reasons: list[str]
    declined_event_id: str | None


def partner_view(r: Referral, rules: IntakeRules) -> ReferralPartnerView:
    return ReferralPartnerView(
        episode_id=str(r.episode_id), person_id=r.person_id, status=r.status.value, referral_source=r.referral_source,
        target_condition=r.target_condition.value, opened_at=r.created_at, template_id=r.template_id,
        missing=r.missing_for_completion(rules) if r.status.value == "open" else [],
        completed_at=r.completed_at, completed_event_id=str(r.completed_event_id) if r.completed_event_id else None,
        declined_at=r.declined_at, decline_reasons=list(r.decline_reasons),
        declined_event_id=str(r.declined_event_id) if r.declined_event_id else None,
    )


class ContactView(BaseModel):
    episode_id: str
    contact: ContactRecordV1 | None


class ErasureView(BaseModel):
    person_id: str
    erased_at: datetime
    referrals: int
    contact_erased: bool
    tombstone: str


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    actor_roles: list[str]
    action: str
    episode_id: str | None
    person_id: str | None
    detail: dict


class ReferralSummary(BaseModel):
    """One line of the worklist: who, where it stands, and what completion still needs."""

    episode_id: str
    person_id: str
    status: str
    referral_source: str
    target_condition: str
    opened_at: datetime
    template_id: str | None
    clinician_id: str | None
    risk_review_pending: bool
    missing: list[str]


class ReferralPage(BaseModel):
    referrals: list[ReferralSummary]
    next: str | None  # pass as ``after`` for the next page; null on the last


def referral_summary(r: Referral, rules: IntakeRules) -> ReferralSummary:
    is_open = r.status.value == "open"
    return ReferralSummary(
        episode_id=str(r.episode_id), person_id=r.person_id, status=r.status.value, referral_source=r.referral_source,
        target_condition=r.target_condition.value, opened_at=r.created_at, template_id=r.template_id,
        clinician_id=r.clinician_id,
        risk_review_pending=is_open and r.risk_review_required(rules) and r.covering_review(rules) is None,
        missing=r.missing_for_completion(rules) if is_open else [])


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after_seq: int | None


class Problem(BaseModel):
    """A refusal: which field (if one), why, and for 409 on completion the list of what is missing."""

    error: str
    detail: str
    field: str | None = None
    missing: list[str] | None = None
    errors: list[dict] | None = None
