"""The scheduler's rules (pure): a command and the current course → the events it causes.

Each function checks everything first and raises (``errors``) before deciding anything, so a
refused command changes nothing. Otherwise it returns a :class:`Decision`: the events, in order,
and the state they lead to (``course.evolve`` applied one by one, so later rules in the same
command see the effect of earlier events). The service layer writes that state and emits the
events in one transaction.

Phase rules (domain.md 2; n = contracted sessions, t = termination length, i = initial length):
- initial → middle when the checklist becomes complete, effective from the first session that
  has not started yet — unless the middle phase would then hold no session (the contract takes
  the course to termination first).
- initial/middle → termination when attended sessions reach n − t, effective n − t + 1 (reason
  ``contract``); from initial also a review notice (checklist incomplete).
- termination → completed when session n is attended (effective n + 1) + ``course.ended``.
- initial/middle/termination → ended_early on withdrawal / referral on, or when the
  ``disengagement_misses``-th consecutive session is missed (only an attendance resets the run;
  cancellations neither count nor reset) + ``course.ended``; the remaining sessions are cancelled.
- completed → maintenance only with a new (maintenance) contract after outcomes reported
  remission at the end.
IPT-A's optional mid-phase parent session (``add_parent_session``): booked beside the contract in
the middle phase, at most the template's number of them; it holds no position, is not counted in
``attended`` and is never replaced or shifted; a miss of it counts in the run of consecutive misses
(it is an appointment of the course nobody came to) and an attendance resets the run; scheduled
ones are cancelled when the course ends.
Calendar: a missed or cancelled session keeps its number and the calendar moves: a replacement
takes the next session's date, each later session the date of the one after it, and the last one
a new slot one cadence later — so the contracted count never changes and the end date moves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Callable
from uuid import UUID
from zoneinfo import ZoneInfo

from rapport_shared.contracts import IntakeCompletedV1, Phase, PlannedSession
from rapport_shared.contracts.base import EventData
from rapport_shared.contracts.course import (
    CancelledBy,
    ChecklistItem,
    ContractKind,
    CourseChecklistUpdatedV1,
    CourseContractChangedV1,
    CourseEndedV1,
    CourseEndReason,
    CoursePlannedV1,
    CourseReviewNeededV1,
    PhaseChangedV1,
    PhaseChangeReason,
    ReviewReason,
    SessionAttendedV1,
    SessionCancelledV1,
    SessionKind,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.intake import Focus

from .calendar import BookingRules, NoBookableSlot, Refusal
from .course import ACUTE, WITH_SESSIONS, Course, Session, SessionStatus, evolve, notice_key
from .errors import InvalidInput, RuleViolation, SlotTaken, UnknownEntity
from .templates import UnknownTemplate, template

INITIAL_WINDOW = "scheduler.initial_window"
OUTCOME_OVERDUE = "scheduler.outcome_overdue"
TIMER_KINDS = (INITIAL_WINDOW, OUTCOME_OVERDUE)

CALENDAR_SHIFT = "calendar_shift"
CONTRACT_CHANGED = "contract_changed"
COURSE_COMPLETED = "course_completed"  # an optional parent session still scheduled when the course completes


@dataclass(frozen=True)
class NoticeGrace:
    """How long after session i ends the initial-phase checklist may still be recorded before the
    "checklist not complete" review notice goes out (domain.md 2 names the notice, not its timing;
    clinicians often record the checklist just after the session). ``end_of_day``: until the end of
    the calendar day session i ended on, in the clinic's time zone (local midnight, DST-aware);
    otherwise ``after`` past the session's end (zero: at its end)."""

    end_of_day: bool = False
    after: timedelta = timedelta(0)
    timezone: str = "Europe/London"

    def due(self, session_end: datetime) -> datetime:
        if not self.end_of_day:
            return session_end + self.after
        tz = ZoneInfo(self.timezone)
        day = session_end.astimezone(tz).date()
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


@dataclass(frozen=True)
class Context:
    """What a decision may depend on besides the course: time, the calendar and settings."""

    now: datetime
    rules: BookingRules | None = None
    session_minutes: int = 50
    lead_days: int = 2
    disengagement_misses: int = 3
    new_id: Callable[[], UUID] = field(default=uuid.uuid4)
    initial_notice_grace: NoticeGrace = NoticeGrace()

    def booking(self) -> BookingRules:
        if self.rules is None:  # a programming error: the service layer loads them for booking commands
            raise RuntimeError("this command books sessions and needs BookingRules")
        return self.rules


class Decision:
    def __init__(self, course: Course | None) -> None:
        self.before = course
        self.course = course
        self.events: list[EventData] = []

    def emit(self, event: EventData) -> None:
        self.events.append(event)
        self.course = evolve(self.course, event)

    def phase_changes(self) -> list[PhaseChangedV1]:
        return [e for e in self.events if isinstance(e, PhaseChangedV1)]


def _ids(c: Course) -> dict:
    return {"episode_id": c.episode_id, "course_id": c.course_id}


def _require_phase(c: Course, allowed: frozenset[Phase] | set[Phase], rule: str, what: str) -> None:
    if c.phase not in allowed:
        raise RuleViolation(what, phase=c.phase.value, rule=rule)


def _session(c: Course, session_id: UUID) -> Session:
    s = c.any_session(session_id)
    if s is None:
        raise UnknownEntity(f"no session {session_id} in course {c.course_id}", field="session_id")
    return s


def _booking(c: Course, ctx: Context, *, own: list[Session] | None = None) -> BookingRules:
    """The booking rules for a change to this course: the clinician's other courses (``ctx``) plus
    the sessions of this course a booking must not overlap — by default its live sessions beside
    the contract (contracted positions keep their own order rules)."""
    rules = ctx.booking()
    own = c.live_extras() if own is None else own
    if not own:
        return rules
    return replace(rules, busy=rules.busy + tuple((s.starts_at, s.ends_at) for s in own))


# -- planning ----------------------------------------------------------------------------------

def plan(intake: IntakeCompletedV1, ctx: Context) -> Decision:
    """A course from the intake's template, its n weekly sessions booked."""
    try:
        t = template(intake.template_id)
    except UnknownTemplate:
        raise InvalidInput(f"unknown template {intake.template_id!r}", field="template_id") from None
    rules = ctx.booking()
    after = max(intake.completed_at, ctx.now) + timedelta(days=ctx.lead_days)
    try:
        starts = rules.series(after, t.sessions, ctx.session_minutes, t.cadence_days)
    except NoBookableSlot as exc:
        raise InvalidInput(str(exc), field="availability") from None
    course_id = ctx.new_id()
    planned = [PlannedSession(session_id=ctx.new_id(), number=k, starts_at=s, duration_minutes=ctx.session_minutes)
               for k, s in enumerate(starts, start=1)]
    d = Decision(None)
    d.emit(CoursePlannedV1(
        episode_id=intake.episode_id, course_id=course_id, person_id=intake.person_id, template_id=t.id,
        clinician_id=intake.clinician_id, contracted_sessions=t.sessions, phase_plan=t.phase_plan(t.sessions),
        sessions=planned, first_session_at=starts[0], planned_end_at=starts[-1] + timedelta(minutes=ctx.session_minutes),
        planned_at=ctx.now, focus=intake.focus,
    ))
    for p in planned:
        d.emit(SessionScheduledV1(
            episode_id=intake.episode_id, course_id=course_id, session_id=p.session_id, number=p.number,
            starts_at=p.starts_at, duration_minutes=p.duration_minutes, kind=t.kind_for(p.number, t.sessions),
            scheduled_at=ctx.now,
        ))
    return d


# -- shared steps ------------------------------------------------------------------------------

def _replace(d: Decision, gone: Session, ctx: Context) -> None:
    """The calendar moves: position ``gone.number`` gets a new session (see module docstring)."""
    c = d.course
    later = [x for x in c.scheduled() if x.number > gone.number]
    last = later[-1] if later else gone
    rules = _booking(c, ctx)
    after = max(rules.same_time_later(last.starts_at, c.cadence_for(last.number)), last.ends_at, ctx.now)
    try:
        new_last = rules.next_start(after, last.duration_minutes)
    except NoBookableSlot as exc:
        raise SlotTaken(f"no slot for the replacement session: {exc}", field="session_id") from None
    targets = [x.starts_at for x in later] + [new_last]
    # From the last backwards, so no two live sessions ever share a date in between.
    for x, to in reversed(list(zip(later, targets[1:]))):
        d.emit(SessionRescheduledV1(
            **_ids(c), session_id=x.session_id, number=x.number, previous_starts_at=x.starts_at, starts_at=to,
            reason_code=CALENDAR_SHIFT, rescheduled_at=ctx.now,
        ))
    d.emit(SessionScheduledV1(
        **_ids(c), session_id=ctx.new_id(), number=gone.number, starts_at=targets[0],
        duration_minutes=gone.duration_minutes, kind=gone.kind, scheduled_at=ctx.now,
    ))


def _end_early(d: Decision, reason: PhaseChangeReason, ctx: Context) -> None:
    c = d.course
    left = c.phase
    d.emit(PhaseChangedV1(
        **_ids(c), from_phase=left, to_phase=Phase.ended_early, effective_from_session=c.attended + 1, reason=reason,
        sessions_remaining=max(0, c.contracted - c.attended), changed_at=ctx.now,
    ))
    by = CancelledBy.patient if reason == PhaseChangeReason.withdrawal else CancelledBy.clinic
    for s in d.course.scheduled():
        d.emit(SessionCancelledV1(**_ids(c), session_id=s.session_id, number=s.number, cancelled_by=by,
                                  reason_code=reason.value, cancelled_at=ctx.now))
    _cancel_extras(d, by, reason.value, ctx)
    d.emit(CourseEndedV1(
        **_ids(c), template_id=c.template_id, clinician_id=c.clinician_id, reason=CourseEndReason(reason.value),
        final_phase=left, attended_sessions=c.attended, contracted_sessions=c.contracted, ended_at=ctx.now,
    ))


def _cancel_extras(d: Decision, by: CancelledBy, reason_code: str, ctx: Context) -> None:
    """The course ends: a parent session beside the contract that is still scheduled will not take place."""
    c = d.course
    for s in c.ordered_extras():
        if s.status == SessionStatus.scheduled:
            d.emit(SessionCancelledV1(**_ids(c), session_id=s.session_id, number=s.number, cancelled_by=by,
                                      reason_code=reason_code, cancelled_at=ctx.now, optional_parent_session=True))


def _to_termination(d: Decision, ctx: Context) -> None:
    c = d.course
    n, t = c.contracted, c.template.termination
    d.emit(PhaseChangedV1(
        **_ids(c), from_phase=c.phase, to_phase=Phase.termination, effective_from_session=n - t + 1,
        reason=PhaseChangeReason.contract, sessions_remaining=t, changed_at=ctx.now,
    ))
    if c.phase == Phase.initial and not c.checklist_complete:
        d.emit(CourseReviewNeededV1(
            **_ids(c), clinician_id=c.clinician_id, reason=ReviewReason.termination_with_incomplete_checklist,
            phase=Phase.termination, session_number=n - t + 1, missing_items=c.missing_items(), raised_at=ctx.now,
        ))


def _progress(d: Decision, ctx: Context) -> None:
    """Phase rules that follow from the attended count (after an attendance or a new contract)."""
    c = d.course
    if c.phase not in ACUTE:
        return
    n, t = c.contracted, c.template.termination
    if c.attended == n:
        left = c.phase
        d.emit(PhaseChangedV1(
            **_ids(c), from_phase=left, to_phase=Phase.completed, effective_from_session=n + 1,
            reason=PhaseChangeReason.last_session_attended, sessions_remaining=0, changed_at=ctx.now,
        ))
        _cancel_extras(d, CancelledBy.clinic, COURSE_COMPLETED, ctx)
        d.emit(CourseEndedV1(
            **_ids(c), template_id=c.template_id, clinician_id=c.clinician_id, reason=CourseEndReason.completed,
            final_phase=left, attended_sessions=c.attended, contracted_sessions=n, ended_at=ctx.now,
        ))
    elif c.attended == n - t and c.phase in (Phase.initial, Phase.middle):
        _to_termination(d, ctx)


# -- recording outcomes ------------------------------------------------------------------------

def _recordable(c: Course, session_id: UUID, now: datetime, verb: str) -> Session:
    _require_phase(c, WITH_SESSIONS, "record_only_with_sessions",
                   f"a session can be recorded {verb} only in a phase with sessions (initial, middle, termination, maintenance)")
    s = _session(c, session_id)
    phase = c.phase.value
    if s.status == SessionStatus.cancelled:
        raise RuleViolation(f"session {s.number} ({s.session_id}) was cancelled and cannot be recorded {verb}; "
                            "its replacement holds the position", phase=phase, rule="cancelled_not_recordable", field="session_id")
    if s.status != SessionStatus.scheduled:
        raise RuleViolation(f"session {s.number} is already recorded {s.status.value}", phase=phase,
                            rule="outcome_recorded_once", field="session_id")
    current = c.current_session()
    # The order is the contract's; a session beside it is recorded whenever it has started.
    if current is not None and current.session_id != s.session_id and s.session_id not in c.extra_sessions:
        raise RuleViolation(f"outcomes are recorded in order: session {current.number} ({current.session_id}) comes first",
                            phase=phase, rule="record_in_order", field="session_id")
    if s.starts_at > now:
        raise RuleViolation(f"session {s.number} starts at {s.starts_at.isoformat()}; it can be recorded from its start",
                            phase=phase, rule="record_after_start", field="session_id")
    return s


def attend(c: Course, session_id: UUID, ctx: Context) -> Decision:
    s = _recordable(c, session_id, ctx.now, "attended")
    d = Decision(c)
    if s.session_id in c.extra_sessions:
        # Not a contracted session: the count, and so every phase rule, stays where it is.
        d.emit(SessionAttendedV1(
            **_ids(c), session_id=s.session_id, number=s.number, attended_sessions=c.attended,
            contracted_sessions=c.total_contracted, phase=c.phase_of(s.number), attended_at=ctx.now,
            optional_parent_session=True,
        ))
        return d
    d.emit(SessionAttendedV1(
        **_ids(c), session_id=s.session_id, number=s.number, attended_sessions=c.attended + 1,
        contracted_sessions=c.total_contracted, phase=c.phase_of(s.number), attended_at=ctx.now,
    ))
    _progress(d, ctx)
    return d


def miss(c: Course, session_id: UUID, ctx: Context) -> Decision:
    s = _recordable(c, session_id, ctx.now, "missed")
    extra = s.session_id in c.extra_sessions
    d = Decision(c)
    d.emit(SessionMissedV1(**_ids(c), session_id=s.session_id, number=s.number,
                           consecutive_missed=c.consecutive_missed + 1, missed_at=ctx.now,
                           optional_parent_session=extra))
    if d.course.phase in ACUTE and d.course.consecutive_missed >= ctx.disengagement_misses:
        _end_early(d, PhaseChangeReason.disengagement, ctx)
    elif not extra:  # a session beside the contract has no position to refill
        _replace(d, d.course.sessions[s.session_id], ctx)
    return d


# -- calendar changes --------------------------------------------------------------------------

def _movable(c: Course, session_id: UUID, now: datetime, verb: str) -> Session:
    _require_phase(c, WITH_SESSIONS, f"{verb}_only_with_sessions",
                   f"a session can be {verb}d only in a phase with sessions (initial, middle, termination, maintenance)")
    s = _session(c, session_id)
    if s.status != SessionStatus.scheduled:
        raise RuleViolation(f"session {s.number} is {s.status.value}; only a scheduled session can be {verb}d",
                            phase=c.phase.value, rule=f"{verb}_scheduled_only", field="session_id")
    if s.starts_at <= now:
        raise RuleViolation(f"session {s.number} has started ({s.starts_at.isoformat()}); record it attended or missed",
                            phase=c.phase.value, rule=f"{verb}_before_start", field="session_id")
    return s


def cancel(c: Course, session_id: UUID, by: CancelledBy, reason_code: str, ctx: Context) -> Decision:
    s = _movable(c, session_id, ctx.now, "cancel")
    extra = s.session_id in c.extra_sessions
    d = Decision(c)
    d.emit(SessionCancelledV1(**_ids(c), session_id=s.session_id, number=s.number, cancelled_by=by,
                              reason_code=reason_code, cancelled_at=ctx.now, optional_parent_session=extra))
    if not extra:
        _replace(d, d.course.sessions[s.session_id], ctx)
    return d


_REFUSALS = {
    Refusal.outside_patient_availability: "is outside the patient's availability",
    Refusal.outside_working_hours: "is outside the clinician's working hours",
    Refusal.closure_day: "falls on a clinic closure day",
}


def reschedule(c: Course, session_id: UUID, to: datetime, reason_code: str, ctx: Context) -> Decision:
    s = _movable(c, session_id, ctx.now, "reschedule")
    if to.tzinfo is None:
        raise InvalidInput("must carry a UTC offset", field="starts_at")
    if to <= ctx.now:
        raise InvalidInput(f"{to.isoformat()} is in the past (now {ctx.now.isoformat()})", field="starts_at")
    if to == s.starts_at:
        raise InvalidInput("is the session's current start", field="starts_at")
    extra = s.session_id in c.extra_sessions
    if extra:
        _check_parent_window(c, to, s.duration_minutes)
        others = [x for x in [*c.live_sessions(), *c.live_extras()] if x.session_id != s.session_id]
        rules = _booking(c, ctx, own=others)
    else:
        prev, nxt = c.live_at(s.number - 1), c.live_at(s.number + 1)
        if prev is not None and to < prev.ends_at:
            raise InvalidInput(f"must be after session {prev.number} ends ({prev.ends_at.isoformat()})", field="starts_at")
        if nxt is not None and to + timedelta(minutes=s.duration_minutes) > nxt.starts_at:
            raise InvalidInput(f"must end before session {nxt.number} starts ({nxt.starts_at.isoformat()})", field="starts_at")
        rules = _booking(c, ctx)
    _check_bookable(rules, c, to, s.duration_minutes)
    d = Decision(c)
    d.emit(SessionRescheduledV1(**_ids(c), session_id=s.session_id, number=_follows(c, to) if extra else s.number,
                                previous_starts_at=s.starts_at,
                                starts_at=to, reason_code=reason_code, rescheduled_at=ctx.now,
                                optional_parent_session=extra))
    return d


def _check_bookable(rules: BookingRules, c: Course, to: datetime, minutes: int) -> None:
    why = rules.refusal(to, minutes)
    if why == Refusal.clinician_busy:
        raise SlotTaken(f"clinician {c.clinician_id} already has a session then", field="starts_at")
    if why is not None:
        raise InvalidInput(f"{to.isoformat()} {_REFUSALS[why]}", field="starts_at")


# -- IPT-A's optional mid-phase parent session -------------------------------------------------

def _check_parent_window(c: Course, to: datetime, minutes: int) -> None:
    """A mid-phase session: after the first middle-phase session starts, and over before the first
    termination session (position n − t + 1) starts."""
    first = c.live_at(c.middle_from() or 1)
    last = c.live_at(c.contracted - c.template.termination + 1)
    if (first is not None and to <= first.starts_at) or (
            last is not None and to + timedelta(minutes=minutes) > last.starts_at):
        after = f"after session {first.number}, the first of the middle phase, starts ({first.starts_at.isoformat()})" \
            if first is not None else "in the middle phase"
        before = f" and end before session {last.number}, the first of termination, starts ({last.starts_at.isoformat()})" \
            if last is not None else ""
        raise InvalidInput(f"a mid-phase parent session must start {after}{before}", field="starts_at")


def _follows(c: Course, to: datetime) -> int:
    """The number a session beside the contract carries: the position of the contracted session it follows."""
    return max((s.number for s in c.live_sessions() if s.number <= c.contracted and s.starts_at < to), default=1)


def add_parent_session(c: Course, to: datetime, ctx: Context) -> Decision:
    """IPT-A: the clinician adds the optional mid-phase parent session (domain.md 2), booked like a
    session (availability, working hours, closure days, no overlap) but beside the contract."""
    optional = c.template.optional_parent
    if optional is None:
        raise RuleViolation(f"template {c.template_id} has no optional parent session (IPT-A's mid-phase one)",
                            phase=c.phase.value, rule="optional_parent_session_in_template")
    if c.phase != optional.phase:
        raise RuleViolation(f"the optional parent session is added in the {optional.phase.value} phase only",
                            phase=c.phase.value, rule="optional_parent_session_in_middle_phase")
    held = [s for s in c.extra_sessions.values() if s.live]
    if len(held) >= optional.max_sessions:
        raise RuleViolation(
            f"template {c.template_id} allows {optional.max_sessions} optional parent session(s) and the course has "
            f"{', '.join(str(s.session_id) for s in held)} (cancel it to book another)",
            phase=c.phase.value, rule="optional_parent_session_limit")
    if c.attended < 1:
        raise RuleViolation("the mid-phase parent session follows the patient's own sessions: none is attended yet",
                            phase=c.phase.value, rule="optional_parent_session_after_attendance")
    if to.tzinfo is None:
        raise InvalidInput("must carry a UTC offset", field="starts_at")
    if to <= ctx.now:
        raise InvalidInput(f"{to.isoformat()} is in the past (now {ctx.now.isoformat()})", field="starts_at")
    _check_parent_window(c, to, ctx.session_minutes)
    _check_bookable(_booking(c, ctx, own=[*c.live_sessions(), *c.live_extras()]), c, to, ctx.session_minutes)
    d = Decision(c)
    d.emit(SessionScheduledV1(
        **_ids(c), session_id=ctx.new_id(), number=_follows(c, to), starts_at=to, duration_minutes=ctx.session_minutes,
        kind=SessionKind.parent, scheduled_at=ctx.now, optional_parent_session=True,
    ))
    return d


def change_contract(c: Course, sessions: int, reason_code: str, ctx: Context) -> Decision:
    """A new acute contract: n within the template's bounds, leaving the termination phase whole."""
    _require_phase(c, {Phase.initial, Phase.middle}, "contract_change_before_termination",
                   "the contract can change only in the initial or middle phase")
    t = c.template
    if not t.min_sessions <= sessions <= t.max_sessions:
        raise InvalidInput(f"{sessions} is outside template {t.id}'s bounds {t.min_sessions}-{t.max_sessions}",
                           field="contracted_sessions")
    if sessions == c.contracted:
        raise InvalidInput(f"{sessions} is already the contract", field="contracted_sessions")
    before_termination = max(c.attended, (c.middle_from() or 1) - 1)
    if sessions < before_termination + t.termination:
        raise InvalidInput(
            f"{sessions} is too few: {before_termination} sessions are attended or under way before the termination "
            f"phase, which needs {t.termination} more (at least {before_termination + t.termination})",
            field="contracted_sessions")
    d = Decision(c)
    d.emit(CourseContractChangedV1(**_ids(c), contract=ContractKind.acute, previous_sessions=c.contracted,
                                   contracted_sessions=sessions, reason_code=reason_code,
                                   phase_plan=t.phase_plan(sessions), changed_at=ctx.now))
    if sessions > c.contracted:
        last = c.live_at(c.contracted)
        rules = _booking(c, ctx)
        after = max(rules.same_time_later(last.starts_at, t.cadence_days), last.ends_at, ctx.now)
        try:
            starts = rules.series(after, sessions - c.contracted, last.duration_minutes, t.cadence_days)
        except NoBookableSlot as exc:
            raise SlotTaken(f"no slot for the added sessions: {exc}", field="contracted_sessions") from None
        for k, start in enumerate(starts, start=c.contracted + 1):
            d.emit(SessionScheduledV1(**_ids(c), session_id=ctx.new_id(), number=k, starts_at=start,
                                      duration_minutes=last.duration_minutes, kind=t.kind_for(k, sessions),
                                      scheduled_at=ctx.now))
    else:
        for s in c.scheduled():
            if s.number > sessions:
                d.emit(SessionCancelledV1(**_ids(c), session_id=s.session_id, number=s.number,
                                          cancelled_by=CancelledBy.clinic, reason_code=CONTRACT_CHANGED,
                                          cancelled_at=ctx.now))
    _progress(d, ctx)
    return d


def withdraw(c: Course, reason: PhaseChangeReason, ctx: Context) -> Decision:
    if reason not in (PhaseChangeReason.withdrawal, PhaseChangeReason.referral_on):
        raise InvalidInput("must be withdrawal or referral_on", field="reason")
    _require_phase(c, ACUTE, "end_early_from_active_phase",
                   "a course can end early only from an active phase (initial, middle, termination)")
    d = Decision(c)
    _end_early(d, reason, ctx)
    return d


# -- the initial-phase checklist ---------------------------------------------------------------

def record_checklist(c: Course, item: ChecklistItem, ctx: Context, *, diagnosis_code: str | None = None,
                     focus: Focus | None = None, reason_code: str | None = None) -> Decision:
    _require_phase(c, ACUTE, "checklist_while_active",
                   "the initial-phase checklist is recorded only while the acute course runs")
    if item != ChecklistItem.diagnosis and diagnosis_code is not None:
        raise InvalidInput("is recorded with the diagnosis item only", field="diagnosis_code")
    if item != ChecklistItem.focus_confirmed:
        if focus is not None:
            raise InvalidInput("is recorded with the focus_confirmed item only", field="focus")
        if reason_code is not None:
            raise InvalidInput("is recorded with the focus_confirmed item only (why the focus changed)", field="reason_code")
    changed = False
    if item == ChecklistItem.focus_confirmed:
        if focus is None:
            if c.focus is None:
                raise InvalidInput("is required: there is no provisional focus to confirm", field="focus")
            focus = c.focus
        if focus.secondary is not None and focus.secondary == focus.primary:
            raise InvalidInput("must differ from the primary focus", field="focus.secondary")
        changed = c.focus is not None and focus != c.focus
        if changed and reason_code is None:
            raise InvalidInput("is required when the focus changes", field="reason_code")
    existing = c.checklist.get(item)
    if existing is not None and not changed and (item != ChecklistItem.diagnosis or diagnosis_code in (None, existing.diagnosis_code)):
        return Decision(c)  # recording the same fact again changes nothing
    was_complete = c.checklist_complete
    started = c.last_started(ctx.now)
    now_complete = all(i in c.checklist or i == item for i in ChecklistItem)
    d = Decision(c)
    d.emit(CourseChecklistUpdatedV1(
        **_ids(c), item=item, session_number=started or None, diagnosis_code=diagnosis_code,
        focus=focus if item == ChecklistItem.focus_confirmed else None, focus_changed=changed,
        reason_code=reason_code if changed else None, checklist_complete=now_complete, recorded_at=ctx.now,
    ))
    if not was_complete and now_complete and c.phase == Phase.initial:
        start = max(started, c.attended) + 1
        n, t = c.contracted, c.template.termination
        if start <= n - t:
            d.emit(PhaseChangedV1(**_ids(c), from_phase=Phase.initial, to_phase=Phase.middle,
                                  effective_from_session=start, reason=PhaseChangeReason.checklist_complete,
                                  sessions_remaining=n - start + 1, changed_at=ctx.now))
    return d


# -- after the acute course --------------------------------------------------------------------

def start_maintenance(c: Course, sessions: int, reason_code: str, ctx: Context) -> Decision:
    _require_phase(c, {Phase.completed}, "maintenance_after_completed",
                   "maintenance (IPT-M) follows a completed acute course")
    if c.remission is not True:
        seen = "no rapport.outcome.evaluated.v1 yet" if c.remission is None else "remission=false"
        raise RuleViolation(f"maintenance is offered only when outcomes reported remission at the end ({seen})",
                            phase=c.phase.value, rule="maintenance_needs_remission")
    m = c.template.maintenance
    if not 1 <= sessions <= m.max_sessions:
        raise InvalidInput(f"must be between 1 and {m.max_sessions}", field="sessions")
    n = c.contracted
    last = c.live_at(n)
    rules = _booking(c, ctx)
    after = max(rules.same_time_later(last.starts_at, m.cadence_days), ctx.now)
    try:
        starts = rules.series(after, sessions, last.duration_minutes, m.cadence_days)
    except NoBookableSlot as exc:
        raise SlotTaken(f"no slot for the maintenance sessions: {exc}", field="sessions") from None
    d = Decision(c)
    d.emit(PhaseChangedV1(**_ids(c), from_phase=Phase.completed, to_phase=Phase.maintenance,
                          effective_from_session=n + 1, reason=PhaseChangeReason.maintenance_contract,
                          sessions_remaining=sessions, changed_at=ctx.now))
    d.emit(CourseContractChangedV1(**_ids(c), contract=ContractKind.maintenance, previous_sessions=c.maintenance_contracted,
                                   contracted_sessions=sessions, reason_code=reason_code, changed_at=ctx.now))
    for k, start in enumerate(starts, start=n + 1):
        d.emit(SessionScheduledV1(**_ids(c), session_id=ctx.new_id(), number=k, starts_at=start,
                                  duration_minutes=last.duration_minutes, kind=SessionKind.maintenance,
                                  scheduled_at=ctx.now))
    return d


# -- time --------------------------------------------------------------------------------------

def desired_timers(c: Course, grace: NoticeGrace = NoticeGrace()) -> dict[str, datetime | None]:
    """The course's durable timers, derived from its state (kind → due, None = not armed).

    - ``initial_window``: session i attended, checklist still incomplete, no notice yet → due
      at the end of session i plus the grace (``NoticeGrace``: a checklist recorded just after the
      session sends no notice), then a review notice.
    - ``outcome_overdue``: the current session still has no outcome one cadence after it ended →
      a review notice: disengagement is decided from recorded misses, so missing records must
      not go unnoticed.
    """
    out: dict[str, datetime | None] = dict.fromkeys(TIMER_KINDS)
    if (c.phase == Phase.initial and not c.checklist_complete
            and notice_key(ReviewReason.initial_checklist_incomplete) not in c.notices):
        s = c.live_at(c.template.initial)
        if s is not None and s.status == SessionStatus.attended:
            out[INITIAL_WINDOW] = grace.due(s.ends_at)
    if c.phase in WITH_SESSIONS:
        cur = c.current_session()
        if cur is not None and notice_key(ReviewReason.session_outcome_unrecorded, cur.session_id) not in c.notices:
            out[OUTCOME_OVERDUE] = cur.ends_at + timedelta(days=c.cadence_for(cur.number))
    return out


def on_timer(c: Course, kind: str, ctx: Context) -> Decision:
    """A timer came due: act only if the state still calls for it (it may have moved on)."""
    d = Decision(c)
    due = desired_timers(c, ctx.initial_notice_grace).get(kind)
    if due is None or due > ctx.now:
        return d
    if kind == INITIAL_WINDOW:
        d.emit(CourseReviewNeededV1(
            **_ids(c), clinician_id=c.clinician_id, reason=ReviewReason.initial_checklist_incomplete, phase=c.phase,
            session_number=c.template.initial, missing_items=c.missing_items(), raised_at=ctx.now,
        ))
    elif kind == OUTCOME_OVERDUE:
        cur = c.current_session()
        d.emit(CourseReviewNeededV1(
            **_ids(c), clinician_id=c.clinician_id, reason=ReviewReason.session_outcome_unrecorded, phase=c.phase,
            session_number=cur.number, session_id=cur.session_id, raised_at=ctx.now,
        ))
    return d
