"""Notifier use cases, one handler per message: events → projections, durable plans (timers) and
deliveries; HTTP commands → recipients, rota, acknowledgements, subscriptions; due plans →
deliveries.

A *plan* is a durable timer (``rapport_shared.timers``) in the notifier's schema; when it fires,
its handler reads the current state (is the session still on? answered? acknowledged?) and, if
the notification is still wanted, writes one ``notifications`` row per channel, keyed by its
idempotency key, in the same transaction (``notifications.enqueue``). The sender
(``sender.py``) delivers those rows.

The notifier consumes every event type of the catalogue (partner webhooks may ask for any of
them): the ones its own rules act on have a handler here, every other one only goes to partners
(``forward_to_partners``); ``rapport.outcome.evaluated.v1`` only with the person's consent to
the referrer summary, which its handler also sends. An event handler reads the event's envelope
(id, time, type) from ``uow.cause``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.contracts.course import (ContractKind, CourseChecklistUpdatedV1, CourseContractChangedV1,
                                             CourseEndedV1, CoursePlannedV1, CourseReviewNeededV1, PhaseChangedV1,
                                             SessionAttendedV1, SessionCancelledV1, SessionMissedV1,
                                             SessionRescheduledV1, SessionScheduledV1)
from rapport_shared.contracts.intake import IntakeCompletedV1, IntakeDeclinedV1
from rapport_shared.contracts.notifications import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1, OutcomeEvaluatedV1, ScoreSubmittedV1
from rapport_shared.envelope import format_time
from rapport_shared.errors import Invalid, NotFound
from rapport_shared.hours import QuietHours, WorkingHours, WorkingHoursError
from rapport_shared.logging import get_logger
from rapport_shared.messagebus import HandlerRegistry
from rapport_shared.timers import Plan, Timer

from ..domain import commands, questionnaires, referrer, rules
from .notifications import (enqueue, fan_out_webhooks, local_time, page_oncall, quiet_hours, recipient_channels,
                            record_skipped)
from .unit_of_work import NotifierUnitOfWork

log = get_logger("rapport.notifier")

handlers: HandlerRegistry[NotifierUnitOfWork] = HandlerRegistry()

T_REMINDER = "notifier.session_reminder"
T_QREQUEST = "notifier.questionnaire_request"
T_QREMINDER = "notifier.questionnaire_reminder"
T_ESCALATION = "notifier.alert_escalation"
SESSION_TIMERS = (T_REMINDER, T_QREQUEST, T_QREMINDER)

__all__ = ["SESSION_TIMERS", "T_ESCALATION", "T_QREMINDER", "T_QREQUEST", "T_REMINDER", "enqueue", "handlers",
           "recipient_channels"]


# ---------------------------------------------------------------- sessions and questionnaires
# Session events (``uow.cause``) are projected replay-safe: the projection never goes back in time,
# so a re-processed older event (a replay that bypasses the inbox) cannot re-arm a plan for a time
# the session has since left (which would send a reminder under the older event's key).

async def move_session(uow: NotifierUnitOfWork, *, episode_id, session_id, number, starts_at: datetime) -> None:
    """``session.rescheduled``: applies unless the session was changed by a later event
    (``changed_at``, the event time of the last change, is newer than this event's time)."""
    event = uow.cause
    row = await uow.sessions.get(session_id)
    if row is not None and row["changed_at"] is not None and event.time < row["changed_at"]:
        log.info("stale session event ignored", session_id=str(session_id), cause_event_id=event.id)
        return
    if row is not None and row["starts_at"] == starts_at and row["status"] == "scheduled":
        return  # already at this time: nothing moves
    await uow.sessions.put(session_id=session_id, episode_id=episode_id, number=number, starts_at=starts_at,
                           cause_event_id=uuid.UUID(event.id), changed_at=event.time)
    await arm_session(uow, session_id, starts_at)


async def arm_session(uow: NotifierUnitOfWork, session_id, starts_at: datetime) -> None:
    now, key = uow.now(), f"session:{session_id}"
    if starts_at <= now:
        for kind in SESSION_TIMERS:
            await uow.timers.cancel(kind, key, now=now)
        return
    requested = await uow.sessions.questionnaire_request(session_id) is not None
    if requested:  # already requested: the request now expires with the moved session
        await uow.sessions.set_request_expiry(session_id, starts_at - uow.settings.questionnaire_expiry_lead)
    await uow.timers.schedule_many(session_plans(uow, session_id, starts_at, requested=requested), now=now)


def session_plans(uow: NotifierUnitOfWork, session_id, starts_at: datetime, *, requested: bool) -> list[Plan]:
    """A future session's timers: its reminder and, unless already requested (or too late to
    answer before it), its questionnaire request."""
    s, now, key, payload = uow.settings, uow.now(), f"session:{session_id}", {"session_id": str(session_id)}
    plans = [Plan(T_REMINDER, key, max(now, starts_at - s.session_reminder_lead), payload)]
    if not requested and starts_at - s.questionnaire_expiry_lead > now:
        plans.append(Plan(T_QREQUEST, key, max(now, starts_at - s.questionnaire_lead), payload))
    return plans


async def introduce_sessions(uow: NotifierUnitOfWork, episode_id, sessions) -> None:
    """``course.planned`` / ``session.scheduled`` only introduce sessions: the new ones stored and
    their timers armed as sets, in a few statements whatever their number; a known one is left as
    it is (a session id's time changes only by ``session.rescheduled``: ``move_session``)."""
    event, now = uow.cause, uow.now()
    known = await uow.sessions.known([s.session_id for s in sessions])
    new = [s for s in sessions if s.session_id not in known]
    if not new:
        return
    await uow.sessions.add_many(episode_id=episode_id, sessions=[(s.session_id, s.number, s.starts_at) for s in new],
                                cause_event_id=uuid.UUID(event.id), changed_at=event.time)
    # A new session has no timers and no request yet: a past one needs nothing cancelled.
    await uow.timers.schedule_many([p for s in new if s.starts_at > now
                                    for p in session_plans(uow, s.session_id, s.starts_at, requested=False)], now=now)


async def _defer_for_quiet_hours(uow: NotifierUnitOfWork, timer: Timer, person_id: str) -> bool:
    qh = await quiet_hours(uow, person_id)
    if qh is None:
        return False
    allowed = qh.next_allowed(uow.now())
    if allowed <= uow.now():
        return False
    await uow.timers.schedule(timer.kind, timer.key, allowed, now=uow.now(), payload=timer.payload)
    log.info("deferred for quiet hours", kind=timer.kind, key=timer.key, until=allowed.isoformat())
    return True


def _request_instruments(uow: NotifierUnitOfWork, row: dict) -> list[str]:
    """What the request before this session asks for: the measurement schedule of the episode's
    target condition at this session of the contracted course (domain.md §3.4)."""
    return questionnaires.request_instruments(
        uow.schedule, target_condition=row.get("target_condition"), session_number=row["number"],
        contracted_sessions=row.get("contracted_sessions"), intake_instruments=row["instruments"],
        default=uow.settings.instruments)


async def _send_questionnaire(uow: NotifierUnitOfWork, row: dict, expires: datetime, kind: str,
                              instruments: list[str]) -> None:
    starts, tz = await local_time(uow, row["person_id"], row["starts_at"])
    exp, _ = await local_time(uow, row["person_id"], expires)
    await enqueue(uow, kind=kind, cause_event_id=row["cause_event_id"], episode_id=row["episode_id"],
                  recipient_ref=f"patient:{row['person_id']}", about=f"session:{row['session_id']}",
                  params={"session_number": row["number"], "starts_at": starts, "expires_at": exp, "timezone": tz,
                          "instruments": ", ".join(instruments), "instrument_codes": list(instruments),
                          "session_id": str(row["session_id"])})


@handlers.timer(T_REMINDER)
async def on_session_reminder(timer: Timer, uow: NotifierUnitOfWork) -> None:
    row = await uow.sessions.with_episode(uuid.UUID(timer.payload["session_id"]))
    if row is None or row["status"] != "scheduled" or row["ended_at"] or row["starts_at"] <= uow.now() or not row["person_id"]:
        return
    if await _defer_for_quiet_hours(uow, timer, row["person_id"]):
        return
    starts, tz = await local_time(uow, row["person_id"], row["starts_at"])
    await enqueue(uow, kind=rules.SESSION_REMINDER, cause_event_id=row["cause_event_id"], episode_id=row["episode_id"],
                  recipient_ref=f"patient:{row['person_id']}", about=f"session:{row['session_id']}",
                  params={"session_number": row["number"], "starts_at": starts, "timezone": tz,
                          "session_id": str(row["session_id"])})


@handlers.timer(T_QREQUEST)
async def on_questionnaire_request(timer: Timer, uow: NotifierUnitOfWork) -> None:
    row = await uow.sessions.with_episode(uuid.UUID(timer.payload["session_id"]))
    if row is None or row["status"] != "scheduled" or row["ended_at"] or not row["person_id"]:
        return
    expires = row["starts_at"] - uow.settings.questionnaire_expiry_lead
    if expires <= uow.now():
        return
    if await _defer_for_quiet_hours(uow, timer, row["person_id"]):
        return
    instruments = _request_instruments(uow, row)
    if not await uow.sessions.add_questionnaire_request(row["session_id"], row["episode_id"], uow.now(), expires,
                                                        instruments):
        return
    remind_at = uow.now() + uow.settings.questionnaire_reminder_after
    if remind_at < expires:
        await uow.timers.schedule(T_QREMINDER, timer.key, remind_at, now=uow.now(), payload=timer.payload)
    await _send_questionnaire(uow, row, expires, rules.QUESTIONNAIRE_REQUEST, instruments)


@handlers.timer(T_QREMINDER)
async def on_questionnaire_reminder(timer: Timer, uow: NotifierUnitOfWork) -> None:
    session_id = uuid.UUID(timer.payload["session_id"])
    row = await uow.sessions.with_episode(session_id)
    req = await uow.sessions.questionnaire_request(session_id)
    if row is None or req is None or req["answered_at"] or req["expires_at"] <= uow.now() or row["status"] != "scheduled":
        return
    if await _defer_for_quiet_hours(uow, timer, row["person_id"]):
        return
    # The same instruments as the request it reminds of (a request from before they were kept: as now).
    instruments = list(req.get("instruments") or _request_instruments(uow, row))
    await _send_questionnaire(uow, row, req["expires_at"], rules.QUESTIONNAIRE_REMINDER, instruments)


# ---------------------------------------------------------------- alerts
@handlers.timer(T_ESCALATION)
async def on_alert_escalation(timer: Timer, uow: NotifierUnitOfWork) -> None:
    alert = await uow.alerts.get(uuid.UUID(timer.payload["alert_id"]))
    if alert is None or alert["acknowledged_at"] or alert["resolved_at"]:
        return
    now = uow.now()
    await uow.alerts.mark_escalated(alert["alert_id"], now)
    await page_oncall(uow, kind=rules.SAFETY_ESCALATION, at=now, cause_event_id=timer.payload["cause_event_id"],
                      episode_id=alert["episode_id"], alert_id=alert["alert_id"], params=timer.payload.get("params", {}))


@handlers.handles(AlertRaisedV1)
async def on_alert_raised(data: AlertRaisedV1, uow: NotifierUnitOfWork) -> None:
    event, now = uow.cause, uow.now()
    new = await uow.alerts.add(alert_id=data.alert_id, episode_id=data.episode_id, kind=data.kind.value,
                               clinician_id=data.clinician_id, raised_at=data.raised_at)
    if new:  # already known: its page and escalation were decided when it first arrived (same
        # transaction). Re-arming here would page whoever is on call *now* on a replay.
        params = {"episode_id": str(data.episode_id), "alert_id": str(data.alert_id), "reason_code": data.reason_code,
                  "raised_at": format_time(data.raised_at), "reason": data.reason_code,
                  # domain.md 3.3: a repeat is paged like the first, naming the open alert(s) it repeats.
                  "linked_alert_ids": ", ".join(str(a) for a in getattr(data, "linked_alert_ids", [])) or "-"}
        if data.kind.value == "safety":
            # At once, every channel of the clinician, quiet hours ignored; out of the clinician's
            # working hours the on-call clinician(s) too; escalation armed in the same transaction.
            await enqueue(uow, kind=rules.SAFETY_ALERT, cause_event_id=event.id, episode_id=data.episode_id,
                          recipient_ref=f"clinician:{data.clinician_id}", alert_id=data.alert_id, params=params)
            await _page_oncall_out_of_hours(uow, data, params)
            await uow.timers.schedule(T_ESCALATION, f"alert:{data.alert_id}", now + uow.settings.escalation_after,
                                      now=now, payload={"alert_id": str(data.alert_id), "cause_event_id": event.id,
                                                        "params": params})
        else:
            await enqueue(uow, kind=rules.REVIEW_NOTICE, cause_event_id=event.id, episode_id=data.episode_id,
                          recipient_ref=f"clinician:{data.clinician_id}", alert_id=data.alert_id, params=params)
    await fan_out_webhooks(uow, event, data)


async def _page_oncall_out_of_hours(uow: NotifierUnitOfWork, data: AlertRaisedV1, params: dict) -> None:
    """A safety alert raised outside the assigned clinician's working hours (when they have some)
    also pages whoever is on call at that moment, at once (kind ``safety_alert``, recipient
    ``oncall:<id>``). Decided on the alert's own time (``raised_at``) so the same event and
    configuration always give the same recipients and keys; the escalation still follows if
    nobody acknowledges."""
    raw = await uow.clinicians.working_hours(data.clinician_id)
    if raw is None:
        return  # no working hours configured: the clinician, then the escalation
    at = data.raised_at
    try:
        hours = WorkingHours.parse(raw)
        if hours is None or hours.within(at):
            return
    except WorkingHoursError:  # validated on the way in; never lose a page over it
        log.error("unreadable working hours; treating the alert as out of hours", clinician_id=data.clinician_id)
    await uow.alerts.mark_out_of_hours(data.alert_id)
    oncall = await page_oncall(uow, kind=rules.SAFETY_ALERT, at=at, cause_event_id=uow.cause.id,
                               episode_id=data.episode_id, alert_id=data.alert_id, params=params,
                               besides=data.clinician_id)
    log.info("safety alert out of hours: on-call paged at once", alert_id=str(data.alert_id), oncall=oncall)


@handlers.handles(AlertResolvedV1)
async def on_alert_resolved(data: AlertResolvedV1, uow: NotifierUnitOfWork) -> None:
    now = uow.now()
    await uow.alerts.resolve(data.alert_id, data.resolved_at)
    await uow.timers.cancel(T_ESCALATION, f"alert:{data.alert_id}", now=now)
    await uow.deliveries.cancel_unsent_for_alert(data.alert_id, now, "alert_resolved")
    await fan_out_webhooks(uow, uow.cause, data)


# ---------------------------------------------------------------- episodes and courses
@handlers.handles(IntakeCompletedV1)
async def on_intake_completed(data: IntakeCompletedV1, uow: NotifierUnitOfWork) -> None:
    instruments = sorted({b.instrument for b in data.baseline_scores}) or None
    # The target condition decides what later questionnaire requests ask for (domain.md §3.4).
    # The consent to the referrer summary decides that summary and the partners' outcome webhooks.
    await uow.episodes.record_intake(data.episode_id, data.person_id, data.clinician_id, instruments,
                                     data.organisation_id, uow.default_org, data.target_condition.value,
                                     data.share_outcomes_with_referrer, data.referral_source)
    await fan_out_webhooks(uow, uow.cause, data)


@handlers.handles(IntakeDeclinedV1)
async def on_intake_declined(data: IntakeDeclinedV1, uow: NotifierUnitOfWork) -> None:
    if data.organisation_id:
        await uow.episodes.record_declined(data.episode_id, data.person_id, data.organisation_id)
    await fan_out_webhooks(uow, uow.cause, data)


@handlers.handles(CoursePlannedV1)
async def on_course_planned(data: CoursePlannedV1, uow: NotifierUnitOfWork) -> None:
    event = uow.cause
    await uow.episodes.record_planned(data.episode_id, data.person_id, data.clinician_id, data.course_id,
                                      uow.default_org)
    # n of the course: mid-course is session ⌈n/2⌉, the end session n (questionnaire requests).
    await uow.episodes.set_contract(data.episode_id, data.contracted_sessions, event.time)
    await introduce_sessions(uow, data.episode_id, data.sessions)
    await enqueue(uow, kind=rules.COURSE_PLANNED, cause_event_id=event.id, episode_id=data.episode_id,
                  recipient_ref=f"clinician:{data.clinician_id}",
                  params={"episode_id": str(data.episode_id), "sessions": data.contracted_sessions,
                          "first_session_at": format_time(data.first_session_at)})
    await fan_out_webhooks(uow, event, data)


@handlers.handles(SessionScheduledV1, SessionRescheduledV1)
async def on_session_timed(data: SessionScheduledV1 | SessionRescheduledV1, uow: NotifierUnitOfWork) -> None:
    await uow.episodes.ensure(data.episode_id, uow.default_org)
    if isinstance(data, SessionRescheduledV1):
        await move_session(uow, episode_id=data.episode_id, session_id=data.session_id, number=data.number,
                           starts_at=data.starts_at)
    else:
        await introduce_sessions(uow, data.episode_id, [data])
    await fan_out_webhooks(uow, uow.cause, data)


_SESSION_END = {SessionCancelledV1: "cancelled", SessionAttendedV1: "attended", SessionMissedV1: "missed"}


@handlers.handles(SessionCancelledV1, SessionAttendedV1, SessionMissedV1)
async def on_session_over(data: SessionCancelledV1 | SessionAttendedV1 | SessionMissedV1,
                          uow: NotifierUnitOfWork) -> None:
    """The session will not take place (or has): its plans are dropped. Unless a later event
    already changed it (a re-processed older event changes nothing)."""
    event, now = uow.cause, uow.now()
    if (not await uow.sessions.set_status(data.session_id, _SESSION_END[type(data)], event.time)
            and await uow.sessions.exists(data.session_id)):
        log.info("stale session event ignored", session_id=str(data.session_id), cause_event_id=event.id)
    else:
        for kind in SESSION_TIMERS:
            await uow.timers.cancel(kind, f"session:{data.session_id}", now=now)
    await fan_out_webhooks(uow, event, data)


@handlers.handles(CourseEndedV1)
async def on_course_ended(data: CourseEndedV1, uow: NotifierUnitOfWork) -> None:
    now = uow.now()
    await uow.episodes.end(data.episode_id, data.ended_at)
    for session_id in await uow.sessions.ids_of_episode(data.episode_id):
        for kind in SESSION_TIMERS:
            await uow.timers.cancel(kind, f"session:{session_id}", now=now)
    await fan_out_webhooks(uow, uow.cause, data)


@handlers.handles(ScoreSubmittedV1)
async def on_score_submitted(data: ScoreSubmittedV1, uow: NotifierUnitOfWork) -> None:
    event, now = uow.cause, uow.now()
    for session_id in await uow.sessions.mark_answered(data.episode_id, min(now, event.time)):
        await uow.timers.cancel(T_QREMINDER, f"session:{session_id}", now=now)
    await fan_out_webhooks(uow, event, data)


# ---------------------------------------------------------------- clinician notices
@handlers.handles(CourseReviewNeededV1)
async def on_review_needed(data: CourseReviewNeededV1, uow: NotifierUnitOfWork) -> None:
    await enqueue(uow, kind=rules.REVIEW_NOTICE, cause_event_id=uow.cause.id, episode_id=data.episode_id,
                  recipient_ref=f"clinician:{data.clinician_id}",
                  params={"episode_id": str(data.episode_id), "reason": data.reason.value,
                          "session_number": data.session_number})
    await fan_out_webhooks(uow, uow.cause, data)


@handlers.handles(PhaseChangedV1)
async def on_phase_changed(data: PhaseChangedV1, uow: NotifierUnitOfWork) -> None:
    clinician = await uow.episodes.clinician_of(data.episode_id)
    if clinician:
        await enqueue(uow, kind=rules.PHASE_CHANGE, cause_event_id=uow.cause.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{clinician}",
                      params={"episode_id": str(data.episode_id), "from_phase": data.from_phase.value,
                              "to_phase": data.to_phase.value, "reason": data.reason.value,
                              "effective_from_session": data.effective_from_session,
                              "sessions_remaining": "-" if data.sessions_remaining is None else data.sessions_remaining})
    await fan_out_webhooks(uow, uow.cause, data)


def _yes_no(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


@handlers.handles(OutcomeEvaluatedV1)
async def on_outcome_evaluated(data: OutcomeEvaluatedV1, uow: NotifierUnitOfWork) -> None:
    clinician = data.clinician_id or await uow.episodes.clinician_of(data.episode_id)
    if clinician:
        await enqueue(uow, kind=rules.COURSE_SUMMARY, cause_event_id=uow.cause.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{clinician}",
                      params={"episode_id": str(data.episode_id), "end_reason": data.end_reason or "n/a",
                              "attended_sessions": data.attended_sessions if data.attended_sessions is not None else "n/a",
                              "recovery": _yes_no(data.recovery), "reliable_improvement": _yes_no(data.reliable_improvement),
                              "reliable_deterioration": _yes_no(data.reliable_deterioration),
                              "baseline_totals": data.baseline_totals, "final_totals": data.final_totals,
                              "revision": data.revision})
    episode = await uow.episodes.referrer(data.episode_id)
    if episode and episode["share_outcomes_with_referrer"] and referrer.first_evaluation(data):
        await _referrer_summary(uow, data, episode)
    # A partner's own subscription to this event is the same outcome leaving for the referring
    # organisation: without the person's consent it is not pushed either (docs/notifier.md).
    if referrer.may_share(episode):
        await fan_out_webhooks(uow, uow.cause, data)


async def _referrer_summary(uow: NotifierUnitOfWork, data: OutcomeEvaluatedV1, episode: dict) -> None:
    """The summary to each endpoint (webhook subscription) of the episode's organisation, once per
    episode whatever evaluation causes it (key ``episode:<id>/…``); no referrer reachable (no
    partner organisation with a subscription, or a self-referral): a ``skipped`` delivery saying so."""
    event, once = uow.cause, f"episode:{data.episode_id}"
    org = data.organisation_id or episode["organisation_id"] or uow.default_org
    subs = (await uow.subscriptions.of_organisation(org, event.time, uow.default_org)
            if org and referrer.may_share(episode) else [])
    if not subs:
        # Who the referrer is stays unknown here (no contact is held: docs/intake.md, "Not done").
        await record_skipped(uow, kind=rules.REFERRER_SUMMARY, cause_event_id=event.id, episode_id=data.episode_id,
                             recipient_ref="referrer:unknown", reason=referrer.NO_REFERRER_CHANNEL, once_per=once)
        log.info("referrer summary not sent: no referrer channel", episode_id=str(data.episode_id))
        return
    body = referrer.body(referrer.summary(data, person_id=episode["person_id"], organisation_id=org,
                                          ended_at=data.course_ended_at or episode["ended_at"]))
    for subscription_id in subs:
        await enqueue(uow, kind=rules.REFERRER_SUMMARY, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"partner:{subscription_id}", channels=["webhook"], language="none",
                      params={"body": body, "event_type": referrer.REFERRER_SUMMARY_TYPE}, once_per=once)


@handlers.handles(CourseContractChangedV1)
async def on_contract_changed(data: CourseContractChangedV1, uow: NotifierUnitOfWork) -> None:
    """A new acute contract moves mid-course and the end (what later requests ask for); a
    maintenance contract continues the numbering past them and changes nothing here."""
    if data.contract == ContractKind.acute:
        await uow.episodes.set_contract(data.episode_id, data.contracted_sessions, uow.cause.time)
    await fan_out_webhooks(uow, uow.cause, data)


# ---------------------------------------------------------------- every other event: partners only
@handlers.handles(CourseChecklistUpdatedV1, NotificationDeliveredV1, NotificationFailedV1)
async def forward_to_partners(data, uow: NotifierUnitOfWork) -> None:
    await fan_out_webhooks(uow, uow.cause, data)


# An event type added to the catalogue later reaches subscribed partners too (named above once
# known, so the AsyncAPI document, which reads this file, lists it).
handlers.handles(*[m for m in EVENT_MODELS.values() if m not in handlers.message_types])(forward_to_partners)


# ---------------------------------------------------------------- commands (HTTP)
def _owner(org: str | None) -> str:
    """The caller's organisation: the owner of what it creates here (a token without one: refused)."""
    if not org:
        raise Invalid("the token names no organisation (claim org)", field="org")
    return org


def _check_language(uow: NotifierUnitOfWork, language: str) -> None:
    if language not in uow.languages:
        raise Invalid(f"no complete template set for language {language!r} (have: "
                      f"{', '.join(sorted(uow.languages))})", field="language")


@handlers.handles(commands.PutClinician)
async def put_clinician(cmd: commands.PutClinician, uow: NotifierUnitOfWork) -> None:
    _check_language(uow, cmd.language)
    for ch in cmd.channels:
        if ch == "email" and not cmd.email or ch == "sms" and not cmd.phone:
            raise Invalid(f"channel {ch} needs its address", field="channels")
    WorkingHours.parse(cmd.working_hours)  # an Invalid naming the field
    org = _owner(cmd.org)
    await uow.clinicians.lock(cmd.clinician_id)
    owners = await uow.clinicians.organisations(cmd.clinician_id, uow.default_org)
    if owners and org not in owners:
        # The core's body for a record outside the caller's relationships (http/access.py).
        raise NotFound(f"no clinician {cmd.clinician_id}", field="clinician_id")
    await uow.clinicians.put(clinician_id=cmd.clinician_id, email=cmd.email, phone=cmd.phone, language=cmd.language,
                             channels=list(cmd.channels), working_hours=cmd.working_hours, organisation_id=org)


@handlers.handles(commands.EraseClinician)
async def erase_clinician(cmd: commands.EraseClinician, uow: NotifierUnitOfWork) -> bool:
    """Whether it was erased: another organisation's clinician answers like an unknown one."""
    org = _owner(cmd.org)
    if org not in await uow.clinicians.organisations(cmd.clinician_id, uow.default_org):
        return False
    return await uow.clinicians.delete(cmd.clinician_id)


@handlers.handles(commands.ReplaceOncall)
async def replace_oncall(cmd: commands.ReplaceOncall, uow: NotifierUnitOfWork) -> int:
    for i, s in enumerate(cmd.slots):
        if s.starts_at.tzinfo is None or s.ends_at.tzinfo is None:
            raise Invalid("times need a UTC offset", field=f"slots.{i}")
        if s.ends_at <= s.starts_at:
            raise Invalid("ends_at must be after starts_at", field=f"slots.{i}.ends_at")
    org = _owner(cmd.org)
    await uow.oncall.replace(org, uow.default_org, [(s.clinician_id, s.starts_at, s.ends_at) for s in cmd.slots])
    return len(cmd.slots)


@handlers.handles(commands.SetPatientPreferences)
async def set_patient_preferences(cmd: commands.SetPatientPreferences, uow: NotifierUnitOfWork) -> None:
    if cmd.language is not None:
        _check_language(uow, cmd.language)
    QuietHours.parse(cmd.quiet_hours)  # an Invalid naming the field
    await uow.patients.set_preferences(cmd.person_id, cmd.language, cmd.quiet_hours)


@handlers.handles(commands.ErasePatient)
async def erase_patient(cmd: commands.ErasePatient, uow: NotifierUnitOfWork) -> bool:
    """Whether anything was held."""
    erased = await uow.patients.erase(cmd.person_id)
    await uow.deliveries.scrub_errors(f"patient:{cmd.person_id}")
    return erased


@handlers.handles(commands.AcknowledgeAlert)
async def acknowledge_alert(cmd: commands.AcknowledgeAlert, uow: NotifierUnitOfWork) -> dict:
    """The alert after it (the first acknowledgement stands); the escalation is cancelled."""
    row = await uow.alerts.acknowledge(cmd.alert_id, uow.now(), cmd.by)
    if row is None:
        raise NotFound(f"no alert {cmd.alert_id}", field="alert_id")  # the core's body (gone since it checked)
    await uow.timers.cancel(T_ESCALATION, f"alert:{cmd.alert_id}", now=uow.now())
    return row


@handlers.handles(commands.Subscribe)
async def subscribe(cmd: commands.Subscribe, uow: NotifierUnitOfWork) -> tuple[dict, str]:
    """The subscription belongs to the partner's organisation and receives only events of that
    organisation's episodes (``fan_out_webhooks``); (the row, its signing secret)."""
    s = uow.settings
    try:
        rules.check_webhook_url(cmd.url, allow_http=s.webhook_allow_http, allow_networks=s.webhook_networks())
    except rules.WebhookUrlError as exc:
        raise Invalid(str(exc), field="url") from None
    for i, t in enumerate(cmd.event_types):
        if t not in EVENT_MODELS:
            raise Invalid(f"unknown event type {t!r}", field=f"event_types.{i}")
    org = _owner(cmd.org)
    secret = rules.new_secret()
    row = await uow.subscriptions.add(partner_id=cmd.partner_id, url=cmd.url, secret=secret,
                                      event_types=sorted(set(cmd.event_types)), effective_from=uow.now(),
                                      organisation_id=org)
    return row, secret


@handlers.handles(commands.Unsubscribe)
async def unsubscribe(cmd: commands.Unsubscribe, uow: NotifierUnitOfWork) -> None:
    if not await uow.subscriptions.delete(cmd.subscription_id, cmd.partner_id, cmd.org):
        raise NotFound("no such subscription", field="subscription_id")
