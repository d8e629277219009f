"""Safety and review alerts (domain.md 3.3): when one is raised, linked, due or resolved.

An alert is open until a clinician records its resolution. A safety cause that repeats while an
alert for it is open (a second positive item 9) is a *new* alert, sent again, and linked to the
open one(s): "already alerted" is never a reason to stay silent (domain.md 3.3; the kinds that
repeat are ``policy.repeating_alert_kinds``). A repeated review cause (a second deteriorating score)
is *linked* to the open review alert: stored and visible, but not a second notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable
from uuid import UUID

from rapport_shared.contracts.outcomes import AlertAction, AlertKind, AlertUrgency, ReliableChange
from rapport_shared.errors import Conflict

from .model import Refused, Submission
from .policy import REASON_NO_RELIABLE_IMPROVEMENT, REASON_RELIABLE_DETERIORATION, URGENCY, OutcomesPolicy


@dataclass(frozen=True)
class OpenAlert:
    alert_id: UUID
    kind: AlertKind
    reason_code: str


@dataclass(frozen=True)
class Raise:
    kind: AlertKind
    urgency: AlertUrgency
    reason_code: str
    instrument: str | None
    session_number: int | None
    # Open alerts of the same cause this one repeats (oldest first); empty for a first alert.
    linked_alert_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class Link:
    alert_id: UUID
    kind: AlertKind
    reason_code: str


def _causes(submission: Submission, policy: OutcomesPolicy) -> list[tuple[AlertKind, str]]:
    causes = [(policy.alert_flags[f], f) for f in submission.flags if f in policy.alert_flags]
    if submission.reliable_change == ReliableChange.deteriorated:
        causes.append((AlertKind.review, REASON_RELIABLE_DETERIORATION))
    return list(dict.fromkeys(causes))


def alerts_for_submission(submission: Submission, open_alerts: Iterable[OpenAlert], policy: OutcomesPolicy) -> list[Raise | Link]:
    """What a new submission does to the episode's alerts: raise new ones or link to open ones.

    Safety: any flag the policy maps to an alert (PHQ-9 item 9 > 0), whatever the total.
    Review: a reliable rise from baseline on an instrument with a determinable threshold.
    """
    open_by_cause: dict[tuple[AlertKind, str], list[OpenAlert]] = {}
    for a in open_alerts:  # oldest first (the caller's order)
        open_by_cause.setdefault((a.kind, a.reason_code), []).append(a)
    decisions: list[Raise | Link] = []
    for kind, reason in _causes(submission, policy):
        existing = open_by_cause.get((kind, reason), [])
        if kind in policy.repeating_alert_kinds:
            # A new alert every time, sent like the first; the submission also joins each open alert
            # of its cause, so their resolution lists it.
            decisions.append(Raise(kind, URGENCY[kind], reason, submission.instrument, submission.session_number,
                                   tuple(a.alert_id for a in existing)))
            decisions.extend(Link(a.alert_id, kind, reason) for a in existing)
        elif existing:
            decisions.append(Link(existing[0].alert_id, kind, reason))
        else:
            decisions.append(Raise(kind, URGENCY[kind], reason, submission.instrument, submission.session_number))
    return decisions


def review_due(*, attended_number: int, review_session: int, already_checked: bool, ended: bool) -> bool:
    """The mid-course review runs once, when the review session (or a later one) is attended."""
    return not already_checked and not ended and attended_number >= review_session


def review_alert(reliable_improvement: bool | None, review_session: int, open_alerts: Iterable[OpenAlert]) -> Raise | Link | None:
    """"No reliable improvement by mid-course": only when that is determinable (a paired measure
    with a baseline; the baseline alone is "no change") — never a guess from missing data."""
    if reliable_improvement is not False:
        return None
    for a in open_alerts:
        if (a.kind, a.reason_code) == (AlertKind.review, REASON_NO_RELIABLE_IMPROVEMENT):
            return Link(a.alert_id, a.kind, a.reason_code)
    return Raise(AlertKind.review, URGENCY[AlertKind.review], REASON_NO_RELIABLE_IMPROVEMENT, None, review_session)


class AlreadyResolved(Conflict, Refused):
    """A resolution for an alert resolved differently before."""


@dataclass(frozen=True)
class Resolution:
    action: AlertAction
    action_text: str | None
    resolved_at: datetime


def check_resolution(*, status: str, raised_at: datetime, action: AlertAction, action_text: str | None,
                     resolved_at: datetime | None, now: datetime, policy: OutcomesPolicy) -> Resolution:
    """Who, when, which action (domain.md 3.3). ``other`` needs a description; the others take an
    optional note. When defaults to now; it may be earlier (recorded after the call) but not
    before the alert was raised, nor in the future."""
    if status != "open":
        raise AlreadyResolved("alert_id", "is already resolved")
    text = action_text.strip() if action_text else None
    if action == AlertAction.other and not text:
        raise Refused("action_text", "is required when action is 'other'")
    when = resolved_at or now
    if when.tzinfo is None:
        raise Refused("resolved_at", "must carry a UTC offset")
    if when < raised_at:
        raise Refused("resolved_at", f"is before the alert was raised ({raised_at.isoformat()})")
    if when > now + policy.max_clock_skew:
        raise Refused("resolved_at", "is in the future")
    return Resolution(action=action, action_text=text or None, resolved_at=when)
