"""Outcomes' model: an episode's scored submissions and what a new one means (domain.md 3).

Pure: no I/O. Scoring itself (answers → total, band, caseness, flags) is the shared catalogue's;
this module adds the episode view — baseline, change, timepoint — and the refusals that need it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping
from uuid import UUID

from rapport_shared.contracts.outcomes import ReliableChange, Timepoint
from rapport_shared.errors import Conflict, Forbidden, Invalid, NotFound
from rapport_shared.instruments import (
    AnswerError,
    Catalogue,
    InstrumentDefinition,
    UnknownInstrument,
    classify_instrument,
    score,
    validate_answers,
)

from .policy import OutcomesPolicy


class Refused(Invalid):
    """A submission (or resolution) that must not be stored. ``field`` names what is wrong,
    ``reason`` why (both in the error body). Plain ``Refused`` is invalid input; the subclasses
    below name a more specific kind first, so the shared mapping finds it before ``Invalid``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field, reason=reason)
        self.reason = reason


class Unknown(NotFound, Refused):
    """Something named in the request does not exist (an episode, an alert)."""


class RaterNotAllowed(Forbidden, Refused):
    """A clinician-rated instrument sent by someone who is not a clinician."""


class KeyReused(Conflict, Refused):
    """The same client submission id with different content."""


@dataclass(frozen=True)
class Episode:
    episode_id: UUID
    person_id: str
    clinician_id: str
    template_id: str
    target_condition: str | None
    began_at: datetime
    correlation_id: str | None = None
    organisation_id: str | None = None  # who may see it (architecture.md "Who may see what")
    # Intake's provisional focus problem area (domain.md 1); the course's confirmed one is kept apart.
    focus_primary: str | None = None
    focus_secondary: str | None = None


@dataclass(frozen=True)
class Baseline:
    """The first score of the episode on one instrument (domain.md 3.2, "paired scores")."""

    submission_id: UUID
    total: int | float
    administered_at: datetime


@dataclass(frozen=True)
class Communication:
    """A notification's outcome as outcomes keeps it (the FHIR record's Communication): kind,
    channel and the recipient's role only, never who or where."""

    notification_id: UUID
    episode_id: UUID
    kind: str
    channel: str
    recipient_role: str  # patient | clinician | oncall | partner
    status: str  # delivered | failed
    at: datetime  # delivered_at / failed_at
    cause_event_id: UUID | None
    error_code: str | None
    attempts: int | None
    recorded_at: datetime


@dataclass(frozen=True)
class Submission:
    """A validated, scored submission as stored and announced."""

    submission_id: UUID
    episode_id: UUID
    instrument: str
    timepoint: Timepoint
    session_number: int | None
    answers: Mapping[int, int]
    total: int | float
    display_total: str
    band: str | None
    caseness: bool | None
    subscales: Mapping[str, float]
    flags: tuple[str, ...]
    baseline_submission_id: UUID | None
    baseline_total: int | float | None
    change_from_baseline: int | float | None
    reliable_change: ReliableChange | None
    administered_at: datetime
    scored_at: datetime
    client_submission_id: str | None = None
    fingerprint: str | None = None
    alert_ids: tuple[UUID, ...] = field(default=())


_ITEM_KEY = re.compile(r"^[1-9][0-9]{0,3}$")


def parse_answers(raw: Mapping[str, object]) -> dict[object, object]:
    """JSON object keys are strings: canonical item numbers ("9") become ints; anything else
    ("09", "nine") stays a string so the catalogue refuses it naming that key."""
    return {int(k) if isinstance(k, str) and _ITEM_KEY.match(k) else k: v for k, v in raw.items()}


def fingerprint(instrument: str, answers: Mapping[int, int], administered_at: datetime, timepoint: str | None,
                session_number: int | None) -> str:
    """What makes two sends "the same submission" (the idempotency key must not hide a change)."""
    canon = {
        "instrument": instrument,
        "answers": {str(k): answers[k] for k in sorted(answers)},
        "administered_at": administered_at.astimezone(timezone.utc).isoformat(),
        "timepoint": timepoint,
        "session_number": session_number,
    }
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()


def definition_for(catalogue: Catalogue, instrument: str, field_name: str = "instrument") -> InstrumentDefinition:
    try:
        return catalogue.get(instrument)
    except UnknownInstrument:
        raise Refused(field_name, f"unknown instrument {instrument!r}; known: {', '.join(catalogue.codes)}") from None


def check_rater(definition: InstrumentDefinition, roles: frozenset[str]) -> None:
    """A clinician-rated instrument (HAM-D-17) is submitted by a clinician, not by an app."""
    if definition.rater == "clinician" and not roles & {"clinician", "admin"}:
        raise RaterNotAllowed("instrument", f"{definition.name} is clinician-rated; submit it as a clinician")


def check_answers(policy: OutcomesPolicy, instrument: str, answers: Mapping[object, object]) -> None:
    """Exactly the instrument's items, each an allowed integer; the refusal names the item."""
    try:
        validate_answers(policy.catalogue.get(instrument), answers)
    except AnswerError as exc:
        raise Refused(exc.field, exc.reason) from None


def check_time(episode: Episode, administered_at: datetime, now: datetime, policy: OutcomesPolicy,
               baseline: Baseline | None, instrument: str) -> None:
    if administered_at.tzinfo is None:
        raise Refused("administered_at", "must carry a UTC offset")
    if administered_at < episode.began_at:
        raise Refused("administered_at", f"is before the episode began ({episode.began_at.isoformat()})")
    if administered_at > now + policy.max_clock_skew:
        raise Refused("administered_at", "is in the future")
    # The baseline is the first score of the episode; an earlier one would silently rewrite the
    # baseline every partner has already been told about.
    if baseline is not None and administered_at < baseline.administered_at:
        raise Refused("administered_at", f"is before the {instrument} baseline ({baseline.administered_at.isoformat()})")


def decide_timepoint(requested: Timepoint | None, baseline: Baseline | None, instrument: str) -> Timepoint:
    """The first score of an instrument is its baseline, whatever the caller called it."""
    if baseline is None:
        return Timepoint.baseline
    if requested == Timepoint.baseline:
        raise Refused("timepoint", f"episode already has a {instrument} baseline")
    return requested or Timepoint.session


def score_submission(
    *,
    policy: OutcomesPolicy,
    submission_id: UUID,
    episode_id: UUID,
    instrument: str,
    answers: Mapping[object, object],
    administered_at: datetime,
    timepoint: Timepoint,
    session_number: int | None,
    baseline: Baseline | None,
    scored_at: datetime,
    client_submission_id: str | None = None,
    fingerprint_: str | None = None,
) -> Submission:
    """Score and compare with the baseline. Raises Refused for unacceptable answers."""
    try:
        result = score(instrument, answers, catalogue=policy.catalogue)  # type: ignore[arg-type]
    except UnknownInstrument:
        raise Refused("instrument", f"unknown instrument {instrument!r}") from None
    except AnswerError as exc:
        raise Refused(exc.field, exc.reason) from None
    clean = {int(k): int(v) for k, v in answers.items()}  # type: ignore[call-overload]
    baseline_total = change = reliable = None
    if timepoint != Timepoint.baseline and baseline is not None:
        c = classify_instrument(instrument, baseline.total, result.total, catalogue=policy.catalogue)
        baseline_total, change = baseline.total, c.change
        reliable = ReliableChange(c.reliable_change) if c.reliable_change else None
    return Submission(
        submission_id=submission_id, episode_id=episode_id, instrument=result.instrument, timepoint=timepoint,
        session_number=session_number, answers=clean, total=result.total, display_total=result.display_total,
        band=result.band, caseness=result.caseness, subscales=dict(result.subscales), flags=result.flags,
        baseline_submission_id=baseline.submission_id if baseline and timepoint != Timepoint.baseline else None,
        baseline_total=baseline_total, change_from_baseline=change, reliable_change=reliable,
        administered_at=administered_at, scored_at=scored_at, client_submission_id=client_submission_id,
        fingerprint=fingerprint_,
    )


def typed_total(definition: InstrumentDefinition, value: object) -> int | float:
    """A total read back from storage (numeric) as the catalogue's type: int for sums."""
    return int(value) if definition.scoring == "sum" else float(value)  # type: ignore[arg-type]
