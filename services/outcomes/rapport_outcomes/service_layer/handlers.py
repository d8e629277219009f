"""Outcomes' use cases: one ``@handlers.handles(Model) async def fn(msg, uow)`` per consumed event
(intake completed, course planned, session attended, course ended; the other session events, a
new contract, the checklist's focus and the notifier's deliveries only keep the episode's record
for the FHIR export) and per
command (submit a questionnaire, resolve an alert), with ``uow`` an :class:`OutcomesUnitOfWork` (its repositories,
``uow.policy`` from the settings, ``uow.cause`` the event being handled).

Each runs inside one unit of work: the state it writes and the events it announces commit
together (a safety alert is in the same transaction as the score that raised it), and every
refusal is raised before the first write, so nothing is half-stored. Every event names the
episode's organisation as recorded from its intake (``episodes.organisation_id``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from uuid import UUID

from rapport_shared.consumer import PoisonEvent
from rapport_shared.contracts import IntakeCompletedV1, ScoreSubmittedV1, Timepoint
from rapport_shared.contracts.course import (
    ChecklistItem,
    ContractKind,
    CourseChecklistUpdatedV1,
    CourseContractChangedV1,
    CourseEndedV1,
    CoursePlannedV1,
    SessionAttendedV1,
    SessionCancelledV1,
    SessionMissedV1,
    SessionRescheduledV1,
    SessionScheduledV1,
)
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.contracts.outcomes import (
    AlertKind,
    AlertRaisedV1,
    AlertResolvedV1,
    OutcomeEvaluatedV1,
    ReliableChangeCriterion,
)
from rapport_shared.logging import get_logger
from rapport_shared.messagebus import HandlerRegistry

from ..domain import alerts as rules
from ..domain.commands import RecordResolution, SubmitQuestionnaire
from ..domain.evaluation import classify, evaluate, treatment_sessions
from ..domain.model import (
    Communication,
    Episode,
    Unknown,
    KeyReused,
    Refused,
    Submission,
    check_answers,
    check_rater,
    check_time,
    decide_timepoint,
    definition_for,
    fingerprint,
    parse_answers,
    score_submission,
)
from ..domain.policy import OutcomesPolicy
from .unit_of_work import OutcomesUnitOfWork
from .views import measurement as measurement_of

SYSTEM = "system"

log = get_logger("rapport.outcomes.handlers")

handlers: HandlerRegistry[OutcomesUnitOfWork] = HandlerRegistry()


@dataclass(frozen=True)
class Accepted:
    submission: Submission
    replayed: bool  # the same client submission id was seen before: nothing new stored


# ---- scores ---------------------------------------------------------------------------------

async def _link(uow: OutcomesUnitOfWork, decision: rules.Link, submission: Submission) -> UUID:
    await uow.alerts.link(decision.alert_id, submission.submission_id, uow.now())
    await uow.alerts.audit(decision.alert_id, "linked", SYSTEM, uow.now(), details={
        "submission_id": submission.submission_id, "reason_code": decision.reason_code})
    return decision.alert_id


async def _accept(uow: OutcomesUnitOfWork, episode: Episode, s: Submission, policy: OutcomesPolicy, *,
                  source: str, submitted_by: str, submitted_role: str | None) -> Submission:
    """Store a scored submission, apply its alerts, and announce both (one transaction)."""
    await uow.submissions.add(s, source=source, submitted_by=submitted_by, submitted_role=submitted_role)
    decisions = rules.alerts_for_submission(s, await uow.alerts.open_for(episode.episode_id), policy)
    # The alert ids go on the score event, so the raise/link decision is made first; the score
    # event is still written (and published) before the alert it caused.
    raised = [(d, uuid.uuid4()) for d in decisions if isinstance(d, rules.Raise)]
    linked = [d.alert_id for d in decisions if isinstance(d, rules.Link)]
    alert_ids = tuple(dict.fromkeys([a for _, a in raised] + linked))
    score_event = await uow.emit(
        ScoreSubmittedV1(
            episode_id=s.episode_id, submission_id=s.submission_id, instrument=s.instrument,
            loinc_code=policy.catalogue.get(s.instrument).loinc_total, timepoint=s.timepoint,
            session_number=s.session_number, total=float(s.total), band=s.band, caseness=s.caseness,
            subscales=dict(s.subscales), baseline_total=None if s.baseline_total is None else float(s.baseline_total),
            change_from_baseline=None if s.change_from_baseline is None else float(s.change_from_baseline),
            reliable_change=s.reliable_change, flags=list(s.flags), administered_at=s.administered_at,
            scored_at=s.scored_at, alert_ids=list(alert_ids), organisation_id=episode.organisation_id,
            reliable_change_criterion=ReliableChangeCriterion(policy.catalogue.get(s.instrument).reliable_change_criterion),
        ),
        correlation_id=episode.correlation_id,
    )
    for decision, alert_id in raised:
        await _raise_alert_with_id(uow, episode, decision, alert_id, submission=s, cause_event_id=score_event.id,
                                   correlation_id=episode.correlation_id)
    for decision in decisions:
        if isinstance(decision, rules.Link):
            await _link(uow, decision, s)
    return Submission(**{**s.__dict__, "alert_ids": alert_ids})


async def _raise_alert_with_id(uow: OutcomesUnitOfWork, episode: Episode, decision: rules.Raise,
                               alert_id: UUID, *, submission: Submission | None, cause_event_id: str | None,
                               correlation_id: str | None) -> None:
    clinician = await uow.episodes.alert_clinician(episode)
    now = uow.now()
    submission_id = submission.submission_id if submission else None
    await uow.alerts.add(
        alert_id=alert_id, episode_id=episode.episode_id, kind=decision.kind.value,
        urgency=decision.urgency.value, reason_code=decision.reason_code, clinician_id=clinician,
        submission_id=submission_id, instrument=decision.instrument, session_number=decision.session_number,
        raised_at=now, linked_alert_ids=decision.linked_alert_ids,
    )
    event = await uow.emit(
        AlertRaisedV1(
            episode_id=episode.episode_id, alert_id=alert_id, kind=decision.kind, urgency=decision.urgency,
            reason_code=decision.reason_code, clinician_id=clinician, submission_id=submission_id,
            instrument=decision.instrument, raised_at=now, session_number=decision.session_number,
            linked_alert_ids=list(decision.linked_alert_ids), organisation_id=episode.organisation_id,
        ),
        correlation_id=correlation_id,
    )
    await uow.alerts.audit(alert_id, "raised", SYSTEM, now, event_id=event.id, details={
        "kind": decision.kind.value, "urgency": decision.urgency.value, "reason_code": decision.reason_code,
        "clinician_id": clinician, "submission_id": submission_id, "session_number": decision.session_number,
        "cause_event_id": cause_event_id, "linked_alert_ids": [str(a) for a in decision.linked_alert_ids]})


@handlers.handles(SubmitQuestionnaire)
async def submit(msg: SubmitQuestionnaire, uow: OutcomesUnitOfWork) -> Accepted:
    """A questionnaire submitted over HTTP: validate strictly, score, store once, announce."""
    cmd, episode_id, who, policy = msg.scores, msg.episode_id, msg.actor, uow.policy
    episode = await uow.episodes.get(episode_id, lock=True)
    if episode is None:
        raise Unknown("episode_id", f"no episode {episode_id} (intake not completed, or unknown)")
    # Who may submit for this episode (own patient, its clinicians, its organisation's partner) is
    # the access policy's (access.yaml), decided before this runs.
    answers = parse_answers(cmd.answers)
    definition = definition_for(policy.catalogue, cmd.instrument)
    key_fingerprint = None
    try:
        key_fingerprint = fingerprint(definition.code, answers, cmd.administered_at,  # type: ignore[arg-type]
                                      cmd.timepoint.value if cmd.timepoint else None, cmd.session_number)
    except TypeError:
        pass  # unsortable (non-int) keys: the catalogue refuses them below
    previous = await uow.submissions.by_client_key(episode_id, cmd.client_submission_id, policy)
    if previous is not None:
        if previous.fingerprint != key_fingerprint:
            raise KeyReused("client_submission_id", "was already used for a different submission")
        return Accepted(previous, replayed=True)
    check_rater(definition, who.roles)
    check_answers(policy, definition.code, answers)
    baseline = await uow.submissions.baseline(episode_id, definition.code, policy)
    check_time(episode, cmd.administered_at, uow.now(), policy, baseline, definition.code)
    timepoint = decide_timepoint(cmd.timepoint, baseline, definition.code)
    scored = score_submission(
        policy=policy, submission_id=uuid.uuid4(), episode_id=episode_id, instrument=definition.code,
        answers=answers, administered_at=cmd.administered_at, timepoint=timepoint, session_number=cmd.session_number,
        baseline=baseline, scored_at=uow.now(), client_submission_id=cmd.client_submission_id,
        fingerprint_=key_fingerprint,
    )
    role = next((r for r in ("clinician", "admin", "partner", "patient_app") if r in who.roles), None)
    stored = await _accept(uow, episode, scored, policy, source="http", submitted_by=who.sub, submitted_role=role)
    # Administered before the course ended but recorded after its evaluation (the last questionnaire
    # landing just after the clinician closed the course): "final" is the latest score by the time
    # it was given, so the evaluation is made again, and revised if this changes it.
    course = await uow.courses.get(episode_id)
    if course is not None and course["ended_at"] is not None and stored.administered_at <= course["ended_at"]:
        await _evaluate(uow, episode, course, policy, revise=True)
    return Accepted(stored, replayed=False)


@handlers.handles(IntakeCompletedV1)
async def record_baseline(intake: IntakeCompletedV1, uow: OutcomesUnitOfWork) -> None:
    """Open the episode's measurement record with the baseline scores intake collected (rescored
    here: this service's catalogue is the authority on scoring)."""
    policy = uow.policy
    assert uow.cause is not None, "an event handler runs with the event as its cause"
    cause_id = uow.cause.id
    episode = Episode(
        episode_id=intake.episode_id, person_id=intake.person_id, clinician_id=intake.clinician_id,
        template_id=intake.template_id, target_condition=intake.target_condition.value, began_at=intake.referred_at,
        # The episode's causal chain: every event outcomes emits for it carries this id.
        correlation_id=uow.cause.correlation_id or cause_id,
        # The organisation it belongs to; an older producer's event names none (settings).
        organisation_id=intake.organisation_id or uow.default_organisation,
        focus_primary=intake.focus.primary.value,
        focus_secondary=intake.focus.secondary.value if intake.focus.secondary else None,
    )
    if not await uow.episodes.add(episode, uow.now()):
        return  # the episode is open already (intake re-sent under a new event id): baselines once
    episode = await uow.episodes.get(intake.episode_id, lock=True)
    assert episode is not None
    for b in intake.baseline_scores:
        # Deterministic id: the same intake event always yields the same submission id.
        submission_id = uuid.uuid5(uuid.UUID(cause_id), b.instrument)
        try:
            definition = definition_for(policy.catalogue, b.instrument, "baseline_scores.instrument")
            prior = await uow.submissions.baseline(intake.episode_id, definition.code, policy)
            scored = score_submission(
                policy=policy, submission_id=submission_id, episode_id=intake.episode_id, instrument=definition.code,
                answers=dict(b.answers), administered_at=b.administered_at,
                timepoint=Timepoint.baseline if prior is None else Timepoint.session,
                session_number=None, baseline=prior, scored_at=uow.now(),
            )
        except Refused as exc:
            # Intake scores with the same catalogue, so this is a version skew: dead-letter the
            # event for an operator rather than open an episode without its baseline.
            raise PoisonEvent(f"baseline {b.instrument}: {exc}") from exc
        await _accept(uow, episode, scored, policy, source="intake", submitted_by=f"intake:{cause_id}", submitted_role=None)
    # A course that ended before this intake event arrived (replay, outage) is evaluated now.
    course = await uow.courses.get(intake.episode_id)
    if course is not None and course["ended_at"] is not None:
        await _evaluate(uow, episode, course, policy)


# ---- alerts ---------------------------------------------------------------------------------

@handlers.handles(RecordResolution)
async def resolve_alert(msg: RecordResolution, uow: OutcomesUnitOfWork) -> tuple[dict, bool]:
    """A clinician records what was done. Returns (alert row as dict, replayed)."""
    cmd, alert_id, who = msg.resolution, msg.alert_id, msg.actor
    alert = await uow.alerts.get(alert_id, lock=True)
    if alert is None:
        raise Unknown("alert_id", f"no alert {alert_id}")
    if alert["status"] == "resolved":
        # The same clinician sending the same resolution again (a retry) gets the first answer.
        same = (alert["resolved_by"], alert["action"], alert["action_text"]) == (
            who.sub, cmd.action.value, cmd.action_text.strip() if cmd.action_text else None)
        if same:
            return dict(alert), True
    resolution = rules.check_resolution(
        status=alert["status"], raised_at=alert["raised_at"], action=cmd.action, action_text=cmd.action_text,
        resolved_at=cmd.resolved_at, now=uow.now(), policy=uow.policy,
    )
    episode = await uow.episodes.get(alert["episode_id"])
    links = await uow.alerts.linked_submissions(alert_id)
    await uow.alerts.resolve(alert_id, by=who.sub, role="clinician", at=resolution.resolved_at,
                             recorded_at=uow.now(), action=resolution.action.value, text=resolution.action_text)
    event = await uow.emit(
        AlertResolvedV1(
            episode_id=alert["episode_id"], alert_id=alert_id, kind=AlertKind(alert["kind"]), resolved_by=who.sub,
            action=resolution.action, resolved_at=resolution.resolved_at,
            linked_submission_ids=[r["submission_id"] for r in links],
            organisation_id=episode.organisation_id if episode else None,
        ),
        correlation_id=episode.correlation_id if episode else None,
    )
    await uow.alerts.audit(alert_id, "resolved", who.sub, uow.now(), actor_role="clinician", event_id=event.id,
                           details={"action": resolution.action.value, "action_text": resolution.action_text,
                                    "resolved_at": resolution.resolved_at.isoformat()})
    return dict(await uow.alerts.get(alert_id)), False


# ---- course events --------------------------------------------------------------------------

@handlers.handles(CoursePlannedV1)
async def course_planned(data: CoursePlannedV1, uow: OutcomesUnitOfWork) -> None:
    focus = data.focus
    await uow.courses.upsert(data.episode_id, uow.now(), course_id=data.course_id, template_id=data.template_id,
                             clinician_id=data.clinician_id, contracted_sessions=data.contracted_sessions,
                             phase_plan=_phase_plan(data.phase_plan), planned_at=data.planned_at,
                             focus_primary=focus.primary.value if focus else None,
                             focus_secondary=focus.secondary.value if focus and focus.secondary else None)
    # The planned sessions, kept for the FHIR record (Appointments, CarePlan activities).
    for session in data.sessions:
        await uow.sessions.upsert(session_id=session.session_id, episode_id=data.episode_id, course_id=data.course_id,
                                  number=session.number, status="booked", at=uow.now(), starts_at=session.starts_at,
                                  duration_minutes=session.duration_minutes)
    await _session_cause(uow, data.episode_id, [s.session_id for s in data.sessions])


async def _session_cause(uow: OutcomesUnitOfWork, episode_id: UUID, session_ids: list[UUID]) -> None:
    """The notifier names this event as the cause of the sessions' reminders (the Communication's link)."""
    if uow.cause is not None and session_ids:
        await uow.session_events.add(UUID(uow.cause.id), episode_id, session_ids)


def _phase_plan(spans) -> str | None:
    return json.dumps([span.model_dump(mode="json") for span in spans]) if spans else None


# The session events below only keep the course's record for the FHIR export (domain.md 5).

def _optional(data: object) -> bool:
    """IPT-A's optional parent session: beside the contract, ``number`` = the session it follows."""
    return bool(getattr(data, "optional_parent_session", False))


@handlers.handles(SessionScheduledV1)
async def session_scheduled(data: SessionScheduledV1, uow: OutcomesUnitOfWork) -> None:
    await uow.sessions.upsert(session_id=data.session_id, episode_id=data.episode_id, course_id=data.course_id,
                              number=data.number, status="booked", at=uow.now(), starts_at=data.starts_at,
                              duration_minutes=data.duration_minutes, kind=data.kind.value,
                              optional_parent=_optional(data))
    await _session_cause(uow, data.episode_id, [data.session_id])


@handlers.handles(SessionRescheduledV1)
async def session_rescheduled(data: SessionRescheduledV1, uow: OutcomesUnitOfWork) -> None:
    await uow.sessions.upsert(session_id=data.session_id, episode_id=data.episode_id, course_id=data.course_id,
                              number=data.number, status="booked", at=uow.now(), starts_at=data.starts_at,
                              optional_parent=_optional(data))
    await _session_cause(uow, data.episode_id, [data.session_id])


@handlers.handles(SessionCancelledV1)
async def session_cancelled(data: SessionCancelledV1, uow: OutcomesUnitOfWork) -> None:
    await uow.sessions.upsert(session_id=data.session_id, episode_id=data.episode_id, course_id=data.course_id,
                              number=data.number, status="cancelled", at=uow.now(), optional_parent=_optional(data))


@handlers.handles(SessionMissedV1)
async def session_missed(data: SessionMissedV1, uow: OutcomesUnitOfWork) -> None:
    await uow.sessions.upsert(session_id=data.session_id, episode_id=data.episode_id, course_id=data.course_id,
                              number=data.number, status="missed", at=uow.now(), optional_parent=_optional(data))


# ---- deliveries (rapport.notifications): the FHIR record's Communications -----------------------

def _role(recipient_ref: str) -> str:
    """The recipient's role only (``patient:<id>`` → ``patient``): who, never which one or where."""
    return recipient_ref.partition(":")[0]


@handlers.handles_many(NotificationDeliveredV1, NotificationFailedV1)
async def deliveries(msgs: list[NotificationDeliveredV1 | NotificationFailedV1], uow: OutcomesUnitOfWork) -> None:
    """Each delivery's outcome, in arrival order; set-based (one statement for a partition's run):
    rapport.notifications is the busiest stream outcomes reads (~36 records an episode)."""
    await uow.communications.record_many([_communication(m, uow.now()) for m in msgs])


def _communication(m: NotificationDeliveredV1 | NotificationFailedV1, now) -> Communication:
    failed = isinstance(m, NotificationFailedV1)
    return Communication(
        notification_id=m.notification_id, episode_id=m.episode_id, kind=m.kind, channel=m.channel,
        recipient_role=_role(m.recipient_ref), status="failed" if failed else "delivered",
        at=m.failed_at if failed else m.delivered_at, cause_event_id=m.cause_event_id,
        error_code=m.error_code if failed else None, attempts=m.attempts if failed else None, recorded_at=now)


@handlers.handles(CourseContractChangedV1)
async def contract_changed(data: CourseContractChangedV1, uow: OutcomesUnitOfWork) -> None:
    """A new acute contract re-plans the phases (the CarePlan's); a maintenance contract has none."""
    if data.contract == ContractKind.acute and data.phase_plan:
        await uow.courses.upsert(data.episode_id, uow.now(), course_id=data.course_id,
                                 phase_plan=_phase_plan(data.phase_plan))


@handlers.handles(CourseChecklistUpdatedV1)
async def checklist_updated(data: CourseChecklistUpdatedV1, uow: OutcomesUnitOfWork) -> None:
    """The focus confirmed (or changed) in the initial phase: the Goal of the FHIR record."""
    if data.focus is None:
        return
    await uow.courses.set_focus(data.episode_id, uow.now(), course_id=data.course_id, primary=data.focus.primary.value,
                                secondary=data.focus.secondary.value if data.focus.secondary else None,
                                confirmed_at=data.recorded_at if data.item == ChecklistItem.focus_confirmed else None)


@handlers.handles(SessionAttendedV1)
async def session_attended(data: SessionAttendedV1, uow: OutcomesUnitOfWork) -> None:
    """Count attendance; at the review session, check for reliable improvement (once per course)."""
    policy = uow.policy
    episode = await uow.episodes.get(data.episode_id, lock=True)
    await uow.courses.record_attendance(data.episode_id, course_id=data.course_id, number=data.number,
                                        attended=data.attended_sessions, contracted=data.contracted_sessions,
                                        at=uow.now(), assessment=policy.is_assessment(data.phase.value))
    await uow.sessions.upsert(session_id=data.session_id, episode_id=data.episode_id, course_id=data.course_id,
                              number=data.number, status="attended", at=uow.now(), phase=data.phase.value,
                              attended_at=data.attended_at, optional_parent=_optional(data))
    course = await uow.courses.get(data.episode_id)
    if episode is None:
        return  # intake not seen yet: the next attended session checks again
    template = course["template_id"] or episode.template_id
    review_session = policy.review_session(template, data.contracted_sessions)
    if not rules.review_due(attended_number=data.number, review_session=review_session,
                            already_checked=course["review_checked_at"] is not None, ended=course["ended_at"] is not None):
        return
    _, classification = classify(await uow.submissions.score_points(episode.episode_id, policy),
                                 episode.target_condition, policy)
    decision = rules.review_alert(classification.reliable_improvement, review_session,
                                  await uow.alerts.open_for(episode.episode_id))
    alert_id = None
    if isinstance(decision, rules.Raise):
        # From the attended-session event: re-processing it names the same alert.
        alert_id = uuid.uuid5(uuid.UUID(uow.cause.id), "review-alert") if uow.cause else uuid.uuid4()
        await _raise_alert_with_id(uow, episode, decision, alert_id, submission=None,
                                   cause_event_id=uow.cause.id if uow.cause else None, correlation_id=None)
    elif isinstance(decision, rules.Link):
        alert_id = decision.alert_id
    await uow.courses.mark_review_checked(episode.episode_id, uow.now(), alert_id)


@handlers.handles(CourseEndedV1)
async def course_ended(data: CourseEndedV1, uow: OutcomesUnitOfWork) -> None:
    episode = await uow.episodes.get(data.episode_id, lock=True)
    await uow.courses.upsert(data.episode_id, uow.now(), course_id=data.course_id, template_id=data.template_id,
                             clinician_id=data.clinician_id, contracted_sessions=data.contracted_sessions,
                             ended_at=data.ended_at, end_reason=data.reason.value,
                             final_phase=data.final_phase.value, ended_attended_sessions=data.attended_sessions)
    if episode is None:
        return  # evaluated when the intake event arrives (record_baseline)
    await _evaluate(uow, episode, await uow.courses.get(data.episode_id), uow.policy)


async def _evaluate(uow: OutcomesUnitOfWork, episode: Episode, course, policy: OutcomesPolicy, *,
                    revise: bool = False) -> None:
    """The end-of-course classification from the scores stored so far: once per episode, or, with
    ``revise``, again when that changes the result (a revision, announced like the first)."""
    current = await uow.evaluations.get(episode.episode_id)
    if current is not None and not revise:
        return
    points = await uow.submissions.score_points(episode.episode_id, policy)
    if current is None:
        through = max((p.recorded_seq for p in points), default=0)
    else:  # what the first evaluation saw, plus late scores given before the end
        through = current["through_seq"]
        points = [p for p in points if through is None or p.recorded_seq <= through
                  or p.administered_at <= course["ended_at"]]
    attended = course["ended_attended_sessions"] or 0
    # Treatment sessions (domain.md 3.2): the attended ones after the assessment phase (positions are
    # attended in order, the assessment ones first). Unknown when the attendance was seen only in part.
    treatment = treatment_sessions(attended, course["assessment_sessions"], course["attended_sessions"])
    ev = evaluate(points, attended_sessions=attended, treatment_sessions=treatment,
                  target_condition=episode.target_condition, policy=policy)
    c = ev.classification
    template = course["template_id"] or episode.template_id
    clinician = course["clinician_id"] or episode.clinician_id
    now = uow.now()
    condition_measures = ev.condition_measures()
    # Which instruments the schedule expected of the attended sessions and which are missing (domain.md 3.4).
    measurement = await measurement_of(uow, episode, course)
    detail = {"paired_measures": list(c.paired_measures),
              "instruments": {k: v.model_dump(mode="json") for k, v in ev.instruments().items()},
              "condition_measures": {k: v.model_dump(mode="json") for k, v in condition_measures.items()},
              "measurement": measurement.model_dump(mode="json")}
    result = dict(
        finished_course=ev.finished_course, treatment_sessions=treatment, counts_toward_recovery=c.counts_toward_recovery,
        caseness_at_baseline=c.caseness_at_baseline, caseness_at_end=c.caseness_at_end, recovery=c.recovery,
        reliable_improvement=c.reliable_improvement, reliable_deterioration=c.reliable_deterioration,
        reliable_recovery=c.reliable_recovery, response=c.response, remission=c.remission)
    revision = 1
    if current is not None:
        stored = json.loads(current["detail"]) if isinstance(current["detail"], str) else current["detail"]
        if _comparable(stored) == _comparable(detail) and all(current[k] == v for k, v in result.items()):
            # The late score is not the final one (or changes nothing): no revision. It may still fill
            # an instrument that was missing: the stored record says so (the event stays as sent).
            if stored.get("measurement") != detail["measurement"]:
                await uow.evaluations.replace(episode_id=episode.episode_id,
                                              detail=json.dumps({**stored, "measurement": detail["measurement"]}))
            return
        revision = current["revision"] + 1
        log.info("end-of-course evaluation revised: a score administered before the end was recorded after it",
                 episode_id=str(episode.episode_id), revision=revision)
    event = await uow.emit(OutcomeEvaluatedV1(
        episode_id=episode.episode_id, course_id=course["course_id"], finished_course=ev.finished_course,
        caseness_at_baseline=c.caseness_at_baseline, caseness_at_end=c.caseness_at_end, recovery=c.recovery,
        reliable_improvement=c.reliable_improvement, reliable_deterioration=c.reliable_deterioration,
        reliable_recovery=c.reliable_recovery, response=c.response, remission=c.remission,
        baseline_totals={k: float(p.baseline.total) for k, p in ev.pairs.items()},
        final_totals={k: float(p.final.total) for k, p in ev.pairs.items()},
        evaluated_at=now, template_id=template, clinician_id=clinician, end_reason=course["end_reason"],
        course_ended_at=course["ended_at"], attended_sessions=attended, treatment_sessions=treatment,
        counts_toward_recovery=c.counts_toward_recovery,
        paired_measures=list(c.paired_measures), instruments=ev.instruments(), revision=revision,
        organisation_id=episode.organisation_id, condition_measures=condition_measures, measurement=measurement,
    ))
    write = uow.evaluations.add if current is None else uow.evaluations.replace
    await write(
        episode_id=episode.episode_id, course_id=course["course_id"], template_id=template,
        clinician_id=clinician, end_reason=course["end_reason"], attended_sessions=attended, **result,
        detail=json.dumps(detail), ended_at=course["ended_at"], evaluated_at=now, event_id=UUID(event.id),
        revision=revision, through_seq=through,
    )


# Fields of the stored detail that follow from the others and the catalogue (added with issue 15):
# an evaluation stored before them must not be "revised" only because it lacks them.
_DERIVED_INSTRUMENT_FIELDS = ("reliable_change_criterion", "reliable_change_threshold")


def _comparable(detail: dict) -> dict:
    return {"paired_measures": detail.get("paired_measures"),
            "instruments": {code: {k: v for k, v in fields.items() if k not in _DERIVED_INSTRUMENT_FIELDS}
                            for code, fields in (detail.get("instruments") or {}).items()}}
