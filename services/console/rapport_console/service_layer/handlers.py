"""The console's handlers: one per consumed event (the caseload read model) and one per command
(a clinician's action, carried to the owning service).

Events: each writes the rows its topic owns and announces the change to open pages (NOTIFY,
delivered when the unit of work commits). Nothing here reads the clock: the read model holds what
the events say, so a replay rebuilds the same rows (projection.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from rapport_shared.contracts import CoursePlannedV1, IntakeCompletedV1, IntakeDeclinedV1, PhaseChangedV1
from rapport_shared.contracts.course import (
    CourseChecklistUpdatedV1,
    CourseContractChangedV1,
    CourseEndedV1,
    SessionAttendedV1,
    SessionCancelledV1,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1, OutcomeEvaluatedV1, ScoreSubmittedV1
from rapport_shared.errors import Conflict, NotFound
from rapport_shared.logging import get_logger
from rapport_shared.messagebus import HandlerRegistry

from ..domain.commands import AcknowledgeAlert, ResolveAlert
from .unit_of_work import ConsoleUnitOfWork

log = get_logger("rapport.console.handlers")

handlers: HandlerRegistry[ConsoleUnitOfWork] = HandlerRegistry()


def _org(msg, uow: ConsoleUnitOfWork) -> str | None:
    """The episode's organisation as the event names it; an older producer's names none (settings)."""
    return getattr(msg, "organisation_id", None) or getattr(uow.settings, "default_organisation", "") or None


def _cause_id(uow: ConsoleUnitOfWork) -> UUID:
    assert uow.cause is not None, "an event handler runs with its event as the cause"
    return uuid.UUID(uow.cause.id)


async def _touch(msg, uow: ConsoleUnitOfWork) -> None:
    await uow.caseload.ensure_episode(msg.episode_id, _org(msg, uow))


# ---- rapport.intake -------------------------------------------------------------------------

@handlers.handles(IntakeCompletedV1)
async def intake_completed(msg: IntakeCompletedV1, uow: ConsoleUnitOfWork) -> None:
    await uow.caseload.intake_completed(
        episode_id=msg.episode_id, organisation_id=_org(msg, uow), clinician_id=msg.clinician_id,
        intake_clinician_id=msg.intake_clinician_id, template_id=msg.template_id,
        target_condition=msg.target_condition.value, focus_primary=msg.focus.primary.value,
        focus_secondary=msg.focus.secondary.value if msg.focus.secondary else None,
        referred_at=msg.referred_at, completed_at=msg.completed_at)
    await uow.caseload.announce(msg.episode_id, "intake")


@handlers.handles(IntakeDeclinedV1)
async def intake_declined(msg: IntakeDeclinedV1, uow: ConsoleUnitOfWork) -> None:
    await uow.caseload.intake_declined(episode_id=msg.episode_id, organisation_id=_org(msg, uow),
                                       reason_code=msg.reason_code, template_id=msg.template_id)
    await uow.caseload.announce(msg.episode_id, "intake")


# ---- rapport.course -------------------------------------------------------------------------

@handlers.handles(CoursePlannedV1)
async def course_planned(msg: CoursePlannedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    plan = [s.model_dump(mode="json") for s in msg.phase_plan]
    first = min(msg.phase_plan, key=lambda s: s.first_session).phase.value if msg.phase_plan else "initial"
    await uow.caseload.course_planned(episode_id=msg.episode_id, course_id=msg.course_id, clinician_id=msg.clinician_id,
                                      template_id=msg.template_id, contracted_sessions=msg.contracted_sessions,
                                      phase=first, phase_plan=plan, planned_at=msg.planned_at)
    for s in msg.sessions:
        await uow.caseload.session_booked(session_id=s.session_id, episode_id=msg.episode_id, course_id=msg.course_id,
                                          number=s.number, starts_at=s.starts_at, duration_minutes=s.duration_minutes)
    await uow.caseload.announce(msg.episode_id, "course")


@handlers.handles(CourseContractChangedV1)
async def contract_changed(msg: CourseContractChangedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    if msg.contract.value == "acute":
        await uow.caseload.contract_changed(msg.episode_id, msg.contracted_sessions,
                                            [s.model_dump(mode="json") for s in msg.phase_plan])
    await uow.caseload.announce(msg.episode_id, "course")


@handlers.handles(PhaseChangedV1)
async def phase_changed(msg: PhaseChangedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.phase_changed(event_id=_cause_id(uow), episode_id=msg.episode_id, course_id=msg.course_id,
                                     from_phase=msg.from_phase.value, to_phase=msg.to_phase.value,
                                     effective_from_session=msg.effective_from_session, reason=msg.reason.value,
                                     changed_at=msg.changed_at)
    await uow.caseload.announce(msg.episode_id, "course")


@handlers.handles(CourseEndedV1)
async def course_ended(msg: CourseEndedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.course_ended(msg.episode_id, ended_at=msg.ended_at, reason=msg.reason.value,
                                    final_phase=msg.final_phase.value, attended_sessions=msg.attended_sessions)
    await uow.caseload.announce(msg.episode_id, "course")


@handlers.handles(CourseChecklistUpdatedV1)
async def checklist_updated(msg: CourseChecklistUpdatedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.checklist_item(
        course_id=msg.course_id, item=msg.item.value, episode_id=msg.episode_id, session_number=msg.session_number,
        diagnosis_code=msg.diagnosis_code, focus_primary=msg.focus.primary.value if msg.focus else None,
        focus_secondary=msg.focus.secondary.value if msg.focus and msg.focus.secondary else None,
        focus_changed=msg.focus_changed, recorded_at=msg.recorded_at)
    await uow.caseload.announce(msg.episode_id, "course")


@handlers.handles(SessionScheduledV1)
async def session_scheduled(msg: SessionScheduledV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.session_booked(session_id=msg.session_id, episode_id=msg.episode_id, course_id=msg.course_id,
                                      number=msg.number, starts_at=msg.starts_at,
                                      duration_minutes=msg.duration_minutes, kind=msg.kind.value)
    await uow.caseload.announce(msg.episode_id, "session")


@handlers.handles(SessionRescheduledV1)
async def session_rescheduled(msg: SessionRescheduledV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.session_moved(msg.session_id, previous_starts_at=msg.previous_starts_at,
                                     starts_at=msg.starts_at, reason_code=msg.reason_code)
    await uow.caseload.announce(msg.episode_id, "session")


@handlers.handles(SessionCancelledV1)
async def session_cancelled(msg: SessionCancelledV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.session_outcome(msg.session_id, "cancelled", msg.cancelled_at,
                                       reason_code=f"{msg.cancelled_by.value}:{msg.reason_code}")
    await uow.caseload.announce(msg.episode_id, "session")


@handlers.handles(SessionAttendedV1)
async def session_attended(msg: SessionAttendedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.session_outcome(msg.session_id, "attended", msg.attended_at, phase=msg.phase.value)
    await uow.caseload.attended_count(msg.episode_id, msg.attended_sessions)
    await uow.caseload.announce(msg.episode_id, "session")


@handlers.handles(SessionMissedV1)
async def session_missed(msg: SessionMissedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.session_outcome(msg.session_id, "missed", msg.missed_at)
    await uow.caseload.announce(msg.episode_id, "session")


# ---- rapport.outcomes -----------------------------------------------------------------------

@handlers.handles(ScoreSubmittedV1)
async def score_submitted(msg: ScoreSubmittedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.add_score(
        submission_id=msg.submission_id, episode_id=msg.episode_id, instrument=msg.instrument,
        timepoint=msg.timepoint.value, session_number=msg.session_number, total=msg.total, band=msg.band,
        caseness=msg.caseness, baseline_total=msg.baseline_total, change_from_baseline=msg.change_from_baseline,
        reliable_change=msg.reliable_change.value if msg.reliable_change else None, flags=msg.flags,
        administered_at=msg.administered_at, scored_at=msg.scored_at)
    await uow.caseload.announce(msg.episode_id, "score")


@handlers.handles(AlertRaisedV1)
async def alert_raised(msg: AlertRaisedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.alert_raised(
        alert_id=msg.alert_id, episode_id=msg.episode_id, kind=msg.kind.value, urgency=msg.urgency.value,
        reason_code=msg.reason_code, clinician_id=msg.clinician_id, instrument=msg.instrument,
        session_number=msg.session_number, raised_at=msg.raised_at, raised_event_id=_cause_id(uow),
        linked_alert_ids=msg.linked_alert_ids)
    await uow.caseload.announce(msg.episode_id, "alert")


@handlers.handles(AlertResolvedV1)
async def alert_resolved(msg: AlertResolvedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    # Raised and resolved are keyed by the episode on one topic: the raise is always seen first.
    if not await uow.caseload.alert_resolved(msg.alert_id, resolved_by=msg.resolved_by, resolved_at=msg.resolved_at,
                                             action=msg.action.value):
        log.warning("alert resolved before it was seen raised; ignored", alert_id=str(msg.alert_id))
    await uow.caseload.announce(msg.episode_id, "alert")


@handlers.handles(OutcomeEvaluatedV1)
async def outcome_evaluated(msg: OutcomeEvaluatedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.evaluated(
        episode_id=msg.episode_id, revision=msg.revision, template_id=msg.template_id, clinician_id=msg.clinician_id,
        end_reason=msg.end_reason, finished_course=msg.finished_course,
        counts_toward_recovery=msg.counts_toward_recovery, recovery=msg.recovery,
        reliable_improvement=msg.reliable_improvement, reliable_recovery=msg.reliable_recovery,
        reliable_deterioration=msg.reliable_deterioration, evaluated_at=msg.evaluated_at)
    await uow.caseload.announce(msg.episode_id, "outcome")


# ---- rapport.notifications ------------------------------------------------------------------

@handlers.handles(NotificationDeliveredV1)
async def delivered(msg: NotificationDeliveredV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.delivery(notification_id=msg.notification_id, episode_id=msg.episode_id, kind=msg.kind,
                                recipient_ref=msg.recipient_ref, channel=msg.channel, status="delivered",
                                error_code=None, cause_event_id=msg.cause_event_id, at=msg.delivered_at)
    await uow.caseload.announce(msg.episode_id, "delivery")


@handlers.handles(NotificationFailedV1)
async def failed(msg: NotificationFailedV1, uow: ConsoleUnitOfWork) -> None:
    await _touch(msg, uow)
    await uow.caseload.delivery(notification_id=msg.notification_id, episode_id=msg.episode_id, kind=msg.kind,
                                recipient_ref=msg.recipient_ref, channel=msg.channel, status="failed",
                                error_code=msg.error_code, cause_event_id=msg.cause_event_id, at=msg.failed_at)
    await uow.caseload.announce(msg.episode_id, "delivery")


# ---- commands: a clinician's actions, carried to the owning service ---------------------------

async def _alert_of_episode(cmd, uow: ConsoleUnitOfWork):
    alert = await uow.caseload.alert(cmd.alert_id)
    if alert is None or alert["episode_id"] != cmd.episode_id:
        # Same answer as an alert of an episode the caller does not reach.
        raise NotFound(f"no alert {cmd.alert_id}", field="alert_id")
    return alert


@handlers.handles(AcknowledgeAlert)
async def acknowledge_alert(cmd: AcknowledgeAlert, uow: ConsoleUnitOfWork) -> dict:
    """The notifier stops the escalation to on-call; the console keeps who and when (as the
    notifier answered), since no event tells it."""
    alert = await _alert_of_episode(cmd, uow)
    if alert["kind"] != "safety":
        raise Conflict("only a safety alert escalates; a review alert needs no acknowledgement", field="alert_id")
    answer = await uow.owners.acknowledge(cmd.alert_id, cmd.token)
    await uow.caseload.acknowledged(alert_id=cmd.alert_id, episode_id=cmd.episode_id,
                                    by=answer.get("acknowledged_by") or cmd.actor,
                                    at=datetime.fromisoformat(answer["acknowledged_at"]),
                                    escalated=bool(answer.get("escalated")))
    await uow.caseload.announce(cmd.episode_id, "alert")
    return answer


@handlers.handles(ResolveAlert)
async def resolve_alert(cmd: ResolveAlert, uow: ConsoleUnitOfWork) -> dict:
    """Outcomes records the resolution and announces it (rapport.alert.resolved.v1), which is how
    the read model learns it, like every other client's resolution."""
    alert = await _alert_of_episode(cmd, uow)
    if alert["resolved_at"] is not None:
        raise Conflict("the alert is resolved already", field="alert_id")
    return await uow.owners.resolve(cmd.alert_id, cmd.token, action=cmd.action.value, action_text=cmd.action_text)
