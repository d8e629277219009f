"""Notifier use cases: events → projections, durable plans (timers) and deliveries.

A *plan* is a durable timer (``rapport_shared.timers``) in the notifier's schema; when it fires,
its handler reads the current state (is the session still on? answered? acknowledged?) and, if
the notification is still wanted, writes one ``notifications`` row per channel, keyed by its
idempotency key, in the same transaction. The sender (``sender.py``) delivers those rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.envelope import CloudEvent, format_time
from rapport_shared.logging import get_logger
from rapport_shared.timers import Timer, TimerStore
from rapport_shared.uow import UnitOfWork

from ..domain import rules
from ..metrics import DELIVERIES, SAFETY_FALLBACK
from ..domain.rules import QuietHours, QuietHoursError, WorkingHours, WorkingHoursError
from ..settings import FALLBACK_EMAIL_REF, NotifierSettings

log = get_logger("rapport.notifier")

T_REMINDER = "notifier.session_reminder"
T_QREQUEST = "notifier.questionnaire_request"
T_QREMINDER = "notifier.questionnaire_reminder"
T_ESCALATION = "notifier.alert_escalation"
SESSION_TIMERS = (T_REMINDER, T_QREQUEST, T_QREMINDER)
SENDER_CHANNEL = "notifier_sender"


@dataclass
class Ctx:
    settings: NotifierSettings
    timers: TimerStore
    languages: frozenset[str] = frozenset()  # languages with a complete template set (empty: not checked)


def default_org(ctx: Ctx) -> str | None:
    """The organisation of an episode no event named one for (older producers; rows from before
    organisations): ``RAPPORT_DEFAULT_ORGANISATION``, or none."""
    return ctx.settings.default_organisation or None


async def episode_org(conn, ctx: Ctx, episode_id) -> str | None:
    """The organisation an episode belongs to here (scopes its alerts' on-call paging and its
    events' partner webhooks; named on the delivery events this service emits)."""
    return await organisation_of(conn, episode_id, default_org(ctx))


async def organisation_of(conn, episode_id, default: str | None) -> str | None:
    """The organisation recorded for the episode, else ``default``."""
    org = await conn.fetchval("SELECT organisation_id FROM episodes WHERE episode_id = $1", episode_id)
    return org or default


def _j(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


# ---------------------------------------------------------------- recipients and deliveries
async def _quiet_hours(conn, person_id: str) -> QuietHours | None:
    raw = await conn.fetchval("SELECT quiet_hours FROM patient_preferences WHERE person_id = $1", person_id)
    if raw is None:
        raw = await conn.fetchval("SELECT quiet_hours FROM patients WHERE person_id = $1", person_id)
    try:
        return QuietHours.parse(_j(raw)) if raw is not None else None
    except QuietHoursError:
        return None


async def recipient_channels(conn, ctx: Ctx, recipient_ref: str, urgent: bool) -> tuple[list[str], str]:
    """(channels, language) for a recipient, honouring consent and preference."""
    role, _, rid = recipient_ref.partition(":")
    lang = ctx.settings.default_language
    if role == "patient":
        p = await conn.fetchrow("SELECT * FROM patients WHERE person_id = $1", rid)
        pref = await conn.fetchrow("SELECT language FROM patient_preferences WHERE person_id = $1", rid)
        # An HTTP preference overrides the contact record's language; a language the templates
        # cannot serve completely falls back to the default.
        wanted = (pref and pref["language"]) or (p and p["language"])
        if wanted and (not ctx.languages or wanted in ctx.languages):
            lang = wanted
        elif wanted:
            log.warning("patient language has no complete template set; using the default",
                        recipient_ref=recipient_ref, language=wanted, default=lang)
        if p is None:
            return [], lang
        consent = _j(p["channel_consent"]) or {}
        usable = [c for c, addr in (("email", p["email"]), ("sms", p["phone"])) if addr and consent.get(c) is True]
        if p["preferred_channel"] in usable:
            usable.remove(p["preferred_channel"])
            usable.insert(0, p["preferred_channel"])
        return usable[:1], lang
    c = await conn.fetchrow("SELECT * FROM clinicians WHERE clinician_id = $1", rid)
    if c is None:
        return (["log"] if ctx.settings.log_channel_fallback else []), lang
    channels = list(c["channels"]) or (["log"] if ctx.settings.log_channel_fallback else [])
    return (channels if urgent else channels[:1]), c["language"]


async def enqueue(uow: UnitOfWork, ctx: Ctx, *, kind: str, cause_event_id: str | uuid.UUID, episode_id: uuid.UUID,
                  recipient_ref: str, params: dict, alert_id: uuid.UUID | None = None,
                  channels: list[str] | None = None, language: str | None = None, about: str | None = None) -> int:
    """Write the deliveries of one notification (one row per channel); an existing key is left alone."""
    if channels is None:
        channels, language = await recipient_channels(uow.conn, ctx, recipient_ref, kind in rules.URGENT)
    language = language or ctx.settings.default_language
    if not channels:
        channels = ["none"]  # recorded as failed below: nobody reachable is an outcome to audit
    n = 0
    for channel in channels:
        key = rules.idem_key(cause_event_id, recipient_ref, channel, kind, about)
        nid = rules.notification_id(key)
        status = "ready" if channel != "none" else "failed"
        inserted = await uow.conn.fetchval(
            "INSERT INTO notifications (notification_id, idem_key, cause_event_id, episode_id, kind, recipient_ref,"
            " channel, language, params, alert_id, status, created_at, last_error, finished_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb,$10,$11,$12,$13,$14) ON CONFLICT (idem_key) DO NOTHING RETURNING true",
            nid, key, uuid.UUID(str(cause_event_id)), episode_id, kind, recipient_ref, channel, language,
            json.dumps(params, default=str), alert_id, status, uow.now(),
            None if status == "ready" else "no_channel", None if status == "ready" else uow.now(),
        )
        if inserted and status == "failed" and not ctx.settings.replay_mode:  # replay mode emits nothing
            from rapport_shared.contracts import NotificationFailedV1
            await uow.emit(NotificationFailedV1(episode_id=episode_id, notification_id=nid, kind=kind,
                                                recipient_ref=recipient_ref, channel="none",
                                                cause_event_id=uuid.UUID(str(cause_event_id)), error_code="no_channel",
                                                attempts=1, failed_at=uow.now(),
                                                organisation_id=await episode_org(uow.conn, ctx, episode_id)),
                           event_id=str(uuid.uuid5(nid, "failed")))
            # Counted inside the consumer's transaction: a rolled-back, redelivered event counts again.
            DELIVERIES.labels("none", kind, "no_channel").inc()
        n += bool(inserted)
    if n:
        await uow.conn.execute("SELECT pg_notify($1, '')", f"{ctx.settings.db_schema}_{SENDER_CHANNEL}")
    return n


# ---------------------------------------------------------------- sessions and questionnaires
async def _local(conn, person_id: str | None, t: datetime) -> tuple[str, str]:
    qh = await _quiet_hours(conn, person_id) if person_id else None
    tz = qh.tz if qh else None
    if tz is None:
        return t.strftime("%Y-%m-%d %H:%M UTC"), "UTC"
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M"), str(tz)


async def upsert_session(uow: UnitOfWork, ctx: Ctx, *, episode_id, session_id, number, starts_at: datetime,
                         cause_id: str, at: datetime, moved: bool = False) -> None:
    """Project a session event. Replay-safe: the projection never goes back in time, so a
    re-processed older event (a replay that bypasses the inbox) cannot re-arm a plan for a time
    the session has since left (which would send a reminder under the older event's key).

    - ``course.planned`` / ``session.scheduled`` (``moved=False``) only introduce a session: for a
      known session they are no-ops (a session id's time changes only by ``session.rescheduled``).
    - ``session.rescheduled`` applies unless the session was changed by a later event
      (``changed_at``, the event time of the last change, is newer than this event's time).
    """
    row = await uow.conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)
    if row is not None and not moved:
        return  # already known (planned, then scheduled; or a re-processed older event)
    if row is not None and row["changed_at"] is not None and at < row["changed_at"]:
        log.info("stale session event ignored", session_id=str(session_id), cause_event_id=cause_id)
        return
    if row is not None and row["starts_at"] == starts_at and row["status"] == "scheduled":
        return  # already at this time: nothing moves
    await uow.conn.execute(
        "INSERT INTO sessions (session_id, episode_id, number, starts_at, status, cause_event_id, changed_at)"
        " VALUES ($1,$2,$3,$4,'scheduled',$5,$6) ON CONFLICT (session_id) DO UPDATE SET starts_at=$4, number=$3,"
        " status='scheduled', cause_event_id=$5, changed_at=$6",
        session_id, episode_id, number, starts_at, uuid.UUID(cause_id), at)
    await arm_session(uow, ctx, session_id, starts_at)


async def arm_session(uow: UnitOfWork, ctx: Ctx, session_id, starts_at: datetime) -> None:
    s, now, key = ctx.settings, uow.now(), f"session:{session_id}"
    if starts_at <= now:
        for kind in SESSION_TIMERS:
            await ctx.timers.cancel(uow.conn, kind, key, now=now)
        return
    await ctx.timers.schedule(uow.conn, T_REMINDER, key, max(now, starts_at - s.delta("session_reminder_lead")), now=now,
                              payload={"session_id": str(session_id)})
    expires = starts_at - s.delta("questionnaire_expiry_lead")
    req = await uow.conn.fetchrow("SELECT * FROM questionnaire_requests WHERE session_id = $1", session_id)
    if req is not None:  # already requested: the request now expires with the moved session
        await uow.conn.execute("UPDATE questionnaire_requests SET expires_at = $2 WHERE session_id = $1", session_id, expires)
        return
    if expires > now:
        await ctx.timers.schedule(uow.conn, T_QREQUEST, key, max(now, starts_at - s.delta("questionnaire_lead")),
                                  now=now, payload={"session_id": str(session_id)})


async def _defer_for_quiet_hours(uow: UnitOfWork, ctx: Ctx, timer: Timer, person_id: str) -> bool:
    qh = await _quiet_hours(uow.conn, person_id)
    if qh is None:
        return False
    allowed = qh.next_allowed(uow.now())
    if allowed <= uow.now():
        return False
    await ctx.timers.schedule(uow.conn, timer.kind, timer.key, allowed, now=uow.now(), payload=timer.payload)
    log.info("deferred for quiet hours", kind=timer.kind, key=timer.key, until=allowed.isoformat())
    return True


async def _session_and_episode(conn, session_id):
    return await conn.fetchrow(
        "SELECT s.*, e.person_id, e.instruments, e.ended_at FROM sessions s JOIN episodes e USING (episode_id)"
        " WHERE s.session_id = $1", uuid.UUID(session_id))


async def on_session_reminder(uow: UnitOfWork, timer: Timer, ctx: Ctx) -> None:
    row = await _session_and_episode(uow.conn, timer.payload["session_id"])
    if row is None or row["status"] != "scheduled" or row["ended_at"] or row["starts_at"] <= uow.now() or not row["person_id"]:
        return
    if await _defer_for_quiet_hours(uow, ctx, timer, row["person_id"]):
        return
    starts, tz = await _local(uow.conn, row["person_id"], row["starts_at"])
    await enqueue(uow, ctx, kind=rules.SESSION_REMINDER, cause_event_id=row["cause_event_id"], episode_id=row["episode_id"],
                  recipient_ref=f"patient:{row['person_id']}", about=f"session:{row['session_id']}",
                  params={"session_number": row["number"], "starts_at": starts, "timezone": tz,
                          "session_id": str(row["session_id"])})


async def on_questionnaire_request(uow: UnitOfWork, timer: Timer, ctx: Ctx) -> None:
    row = await _session_and_episode(uow.conn, timer.payload["session_id"])
    if row is None or row["status"] != "scheduled" or row["ended_at"] or not row["person_id"]:
        return
    expires = row["starts_at"] - ctx.settings.delta("questionnaire_expiry_lead")
    if expires <= uow.now():
        return
    if await _defer_for_quiet_hours(uow, ctx, timer, row["person_id"]):
        return
    inserted = await uow.conn.fetchval(
        "INSERT INTO questionnaire_requests (session_id, episode_id, requested_at, expires_at) VALUES ($1,$2,$3,$4)"
        " ON CONFLICT (session_id) DO NOTHING RETURNING true", row["session_id"], row["episode_id"], uow.now(), expires)
    if not inserted:
        return
    remind_at = uow.now() + ctx.settings.delta("questionnaire_reminder_after")
    if remind_at < expires:
        await ctx.timers.schedule(uow.conn, T_QREMINDER, timer.key, remind_at, now=uow.now(), payload=timer.payload)
    await _send_questionnaire(uow, ctx, row, expires, rules.QUESTIONNAIRE_REQUEST)


async def _send_questionnaire(uow, ctx, row, expires, kind) -> None:
    starts, tz = await _local(uow.conn, row["person_id"], row["starts_at"])
    exp, _ = await _local(uow.conn, row["person_id"], expires)
    instruments = list(row["instruments"] or ctx.settings.instruments)
    await enqueue(uow, ctx, kind=kind, cause_event_id=row["cause_event_id"], episode_id=row["episode_id"],
                  recipient_ref=f"patient:{row['person_id']}", about=f"session:{row['session_id']}",
                  params={"session_number": row["number"], "starts_at": starts, "expires_at": exp, "timezone": tz,
                          "instruments": ", ".join(instruments), "session_id": str(row["session_id"])})


async def on_questionnaire_reminder(uow: UnitOfWork, timer: Timer, ctx: Ctx) -> None:
    row = await _session_and_episode(uow.conn, timer.payload["session_id"])
    req = await uow.conn.fetchrow("SELECT * FROM questionnaire_requests WHERE session_id = $1", uuid.UUID(timer.payload["session_id"]))
    if row is None or req is None or req["answered_at"] or req["expires_at"] <= uow.now() or row["status"] != "scheduled":
        return
    if await _defer_for_quiet_hours(uow, ctx, timer, row["person_id"]):
        return
    await _send_questionnaire(uow, ctx, row, req["expires_at"], rules.QUESTIONNAIRE_REMINDER)


# ---------------------------------------------------------------- alerts
async def on_alert_escalation(uow: UnitOfWork, timer: Timer, ctx: Ctx) -> None:
    alert = await uow.conn.fetchrow("SELECT * FROM alerts WHERE alert_id = $1", uuid.UUID(timer.payload["alert_id"]))
    if alert is None or alert["acknowledged_at"] or alert["resolved_at"]:
        return
    now = uow.now()
    oncall = await _oncall_at(uow.conn, ctx, now, await episode_org(uow.conn, ctx, alert["episode_id"]))
    await uow.conn.execute("UPDATE alerts SET escalated_at = $2 WHERE alert_id = $1", alert["alert_id"], now)
    if not oncall:
        await page_safety_fallback(uow, ctx, kind=rules.SAFETY_ESCALATION, cause_event_id=timer.payload["cause_event_id"],
                                   episode_id=alert["episode_id"], alert_id=alert["alert_id"],
                                   params=timer.payload.get("params", {}))
    for r in oncall:
        await enqueue(uow, ctx, kind=rules.SAFETY_ESCALATION, cause_event_id=timer.payload["cause_event_id"],
                      episode_id=alert["episode_id"], recipient_ref=f"oncall:{r['clinician_id']}",
                      alert_id=alert["alert_id"], params=timer.payload.get("params", {}))


async def page_safety_fallback(uow: UnitOfWork, ctx: Ctx, *, kind: str, cause_event_id, episode_id, alert_id,
                               params: dict) -> None:
    """Nobody on call for the alert's organisation: page ``RAPPORT_SAFETY_FALLBACK`` instead, as a
    delivery like any other (the delivery log, its delivered/failed event, the metrics), under the
    key ``<cause>/<fallback ref>/<channel>/<kind>``. With no fallback configured (only outside
    production) the page is recorded as a failed ``no_channel`` delivery to ``oncall:fallback``
    (its ``notification.failed`` event and ``RapportSafetyNotificationNotDelivered``): never only
    a log line."""
    target = ctx.settings.safety_fallback_recipient()
    ref, channels = target if target is not None else (FALLBACK_EMAIL_REF, [])
    log.error("safety page with nobody on call: paging the fallback" if target else
              "safety page with nobody on call and no RAPPORT_SAFETY_FALLBACK: recorded as not delivered",
              alert_id=str(alert_id), kind=kind, recipient_ref=ref)
    await enqueue(uow, ctx, kind=kind, cause_event_id=cause_event_id, episode_id=episode_id, recipient_ref=ref,
                  alert_id=alert_id, params={**params, "fallback": True}, channels=channels,
                  language=None if channels is None else ctx.settings.default_language)
    # Counted inside the transaction (as DELIVERIES no_channel): a rolled-back firing counts again.
    SAFETY_FALLBACK.labels(kind, "paged" if target else "unconfigured").inc()


async def _oncall_at(conn, ctx: Ctx, at: datetime, org: str | None) -> list:
    """The on-call clinicians of the alert's organisation at ``at`` (an admin sets its own
    organisation's rota; slots from before organisations count for the default one). An episode of
    no organisation pages the slots of no organisation (a deployment without organisations)."""
    return await conn.fetch(
        "SELECT DISTINCT clinician_id FROM oncall WHERE starts_at <= $1 AND ends_at > $1"
        " AND COALESCE(organisation_id, $2::text) IS NOT DISTINCT FROM $3::text ORDER BY clinician_id",
        at, default_org(ctx), org)


async def acknowledge_alert(uow: UnitOfWork, ctx: Ctx, alert_id: uuid.UUID, by: str) -> dict | None:
    row = await uow.conn.fetchrow(
        "UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, $2), acknowledged_by = COALESCE(acknowledged_by, $3)"
        " WHERE alert_id = $1 RETURNING *", alert_id, uow.now(), by)
    if row is None:
        return None
    await ctx.timers.cancel(uow.conn, T_ESCALATION, f"alert:{alert_id}", now=uow.now())
    return dict(row)


# ---------------------------------------------------------------- events
async def handle_event(uow: UnitOfWork, event: CloudEvent, data, ctx: Ctx) -> None:
    t = event.type
    conn, now = uow.conn, uow.now()
    if t == "rapport.intake.completed.v1":
        instruments = sorted({b.instrument for b in data.baseline_scores}) or None
        # The organisation the intake names wins; an older producer's event (none named) keeps
        # what is known, else the default organisation.
        await conn.execute(
            "INSERT INTO episodes (episode_id, person_id, clinician_id, instruments, organisation_id)"
            " VALUES ($1,$2,$3,$4,COALESCE($5::text, $6::text))"
            " ON CONFLICT (episode_id) DO UPDATE SET person_id=$2, clinician_id=$3, instruments=COALESCE($4, episodes.instruments),"
            " organisation_id=COALESCE($5::text, episodes.organisation_id, $6::text)",
            data.episode_id, data.person_id, data.clinician_id, instruments, data.organisation_id, default_org(ctx))
    elif t == "rapport.intake.declined.v1":
        if data.organisation_id:
            await conn.execute(
                "INSERT INTO episodes (episode_id, person_id, organisation_id) VALUES ($1,$2,$3)"
                " ON CONFLICT (episode_id) DO UPDATE SET organisation_id=$3", data.episode_id, data.person_id,
                data.organisation_id)
    elif t == "rapport.course.planned.v1":
        await conn.execute(
            "INSERT INTO episodes (episode_id, person_id, clinician_id, course_id, organisation_id) VALUES ($1,$2,$3,$4,$5)"
            " ON CONFLICT (episode_id) DO UPDATE SET person_id=$2, clinician_id=$3, course_id=$4",
            data.episode_id, data.person_id, data.clinician_id, data.course_id, default_org(ctx))
        for s in data.sessions:
            await upsert_session(uow, ctx, episode_id=data.episode_id, session_id=s.session_id, number=s.number,
                                 starts_at=s.starts_at, cause_id=event.id, at=event.time)
        await enqueue(uow, ctx, kind=rules.COURSE_PLANNED, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{data.clinician_id}",
                      params={"episode_id": str(data.episode_id), "sessions": data.contracted_sessions,
                              "first_session_at": format_time(data.first_session_at)})
    elif t == "rapport.session.scheduled.v1":
        await _ensure_episode(conn, ctx, data.episode_id)
        await upsert_session(uow, ctx, episode_id=data.episode_id, session_id=data.session_id, number=data.number,
                             starts_at=data.starts_at, cause_id=event.id, at=event.time)
    elif t == "rapport.session.rescheduled.v1":
        await _ensure_episode(conn, ctx, data.episode_id)
        await upsert_session(uow, ctx, episode_id=data.episode_id, session_id=data.session_id, number=data.number,
                             starts_at=data.starts_at, cause_id=event.id, at=event.time, moved=True)
    elif t in ("rapport.session.cancelled.v1", "rapport.session.attended.v1", "rapport.session.missed.v1"):
        status = t.split(".")[2]
        changed = await conn.fetchval(
            "UPDATE sessions SET status = $2, changed_at = $3 WHERE session_id = $1"
            " AND (changed_at IS NULL OR changed_at <= $3) RETURNING true", data.session_id, status, event.time)
        if not changed and await conn.fetchval("SELECT true FROM sessions WHERE session_id = $1", data.session_id):
            log.info("stale session event ignored", session_id=str(data.session_id), cause_event_id=event.id)
            return await fan_out_webhooks(uow, ctx, event, data)
        for kind in (SESSION_TIMERS if status == "cancelled" else (T_REMINDER, T_QREQUEST, T_QREMINDER)):
            await ctx.timers.cancel(conn, kind, f"session:{data.session_id}", now=now)
    elif t == "rapport.course.ended.v1":
        await conn.execute("UPDATE episodes SET ended_at = $2 WHERE episode_id = $1", data.episode_id, data.ended_at)
        for r in await conn.fetch("SELECT session_id FROM sessions WHERE episode_id = $1", data.episode_id):
            for kind in SESSION_TIMERS:
                await ctx.timers.cancel(conn, kind, f"session:{r['session_id']}", now=now)
    elif t == "rapport.score.submitted.v1":
        rows = await conn.fetch(
            "UPDATE questionnaire_requests SET answered_at = $2 WHERE episode_id = $1 AND answered_at IS NULL"
            " AND requested_at <= $2 RETURNING session_id", data.episode_id, min(now, event.time))
        for r in rows:
            await ctx.timers.cancel(conn, T_QREMINDER, f"session:{r['session_id']}", now=now)
    elif t == "rapport.alert.raised.v1":
        await _alert_raised(uow, ctx, event, data)
    elif t == "rapport.alert.resolved.v1":
        await conn.execute("UPDATE alerts SET resolved_at = $2 WHERE alert_id = $1", data.alert_id, data.resolved_at)
        await ctx.timers.cancel(conn, T_ESCALATION, f"alert:{data.alert_id}", now=now)
        await conn.execute("UPDATE notifications SET status = 'cancelled', finished_at = $2, last_error = 'alert_resolved'"
                           " WHERE alert_id = $1 AND status = 'ready'", data.alert_id, now)
    elif t == "rapport.course.review_needed.v1":
        await enqueue(uow, ctx, kind=rules.REVIEW_NOTICE, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{data.clinician_id}",
                      params={"episode_id": str(data.episode_id), "reason": data.reason.value,
                              "session_number": data.session_number})
    elif t == "rapport.course.phase_changed.v1":
        clinician = await conn.fetchval("SELECT clinician_id FROM episodes WHERE episode_id = $1", data.episode_id)
        if clinician:
            await enqueue(uow, ctx, kind=rules.PHASE_CHANGE, cause_event_id=event.id, episode_id=data.episode_id,
                          recipient_ref=f"clinician:{clinician}",
                          params={"episode_id": str(data.episode_id), "from_phase": data.from_phase.value,
                                  "to_phase": data.to_phase.value, "reason": data.reason.value,
                                  "effective_from_session": data.effective_from_session,
                                  "sessions_remaining": "-" if data.sessions_remaining is None else data.sessions_remaining})
    elif t == "rapport.outcome.evaluated.v1":
        clinician = data.clinician_id or await conn.fetchval(
            "SELECT clinician_id FROM episodes WHERE episode_id = $1", data.episode_id)
        if clinician:
            yn = lambda v: "n/a" if v is None else ("yes" if v else "no")  # noqa: E731
            await enqueue(uow, ctx, kind=rules.COURSE_SUMMARY, cause_event_id=event.id, episode_id=data.episode_id,
                          recipient_ref=f"clinician:{clinician}",
                          params={"episode_id": str(data.episode_id), "end_reason": data.end_reason or "n/a",
                                  "attended_sessions": data.attended_sessions if data.attended_sessions is not None else "n/a",
                                  "recovery": yn(data.recovery), "reliable_improvement": yn(data.reliable_improvement),
                                  "reliable_deterioration": yn(data.reliable_deterioration),
                                  "baseline_totals": data.baseline_totals, "final_totals": data.final_totals,
                                  "revision": data.revision})
    await fan_out_webhooks(uow, ctx, event, data)


async def _ensure_episode(conn, ctx: Ctx, episode_id) -> None:
    await conn.execute("INSERT INTO episodes (episode_id, organisation_id) VALUES ($1,$2) ON CONFLICT DO NOTHING",
                       episode_id, default_org(ctx))


async def _alert_raised(uow: UnitOfWork, ctx: Ctx, event: CloudEvent, data) -> None:
    conn, now = uow.conn, uow.now()
    new = await conn.fetchval(
        "INSERT INTO alerts (alert_id, episode_id, kind, clinician_id, raised_at) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (alert_id) DO NOTHING RETURNING true", data.alert_id, data.episode_id, data.kind.value,
        data.clinician_id, data.raised_at)
    if not new:
        # Already known: its page and escalation were decided when it first arrived (same
        # transaction). Re-arming here would page whoever is on call *now* on a replay.
        return
    params = {"episode_id": str(data.episode_id), "alert_id": str(data.alert_id), "reason_code": data.reason_code,
              "raised_at": format_time(data.raised_at), "reason": data.reason_code,
              # domain.md 3.3: a repeat is paged like the first, naming the open alert(s) it repeats.
              "linked_alert_ids": ", ".join(str(a) for a in getattr(data, "linked_alert_ids", [])) or "-"}
    if data.kind.value == "safety":
        # At once, every channel of the clinician, quiet hours ignored; out of the clinician's working
        # hours the on-call clinician(s) too; escalation armed in the same transaction.
        await enqueue(uow, ctx, kind=rules.SAFETY_ALERT, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{data.clinician_id}", alert_id=data.alert_id, params=params)
        await _page_oncall_out_of_hours(uow, ctx, event, data, params)
        await ctx.timers.schedule(conn, T_ESCALATION, f"alert:{data.alert_id}", now + ctx.settings.delta("escalation_after"),
                                  now=now, payload={"alert_id": str(data.alert_id), "cause_event_id": event.id, "params": params})
    else:
        await enqueue(uow, ctx, kind=rules.REVIEW_NOTICE, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"clinician:{data.clinician_id}", alert_id=data.alert_id, params=params)


async def _page_oncall_out_of_hours(uow: UnitOfWork, ctx: Ctx, event: CloudEvent, data, params: dict) -> None:
    """A safety alert raised outside the assigned clinician's working hours (when they have some)
    also pages whoever is on call at that moment, at once (kind ``safety_alert``, recipient
    ``oncall:<id>``). Decided on the alert's own time (``raised_at``) so the same event and
    configuration always give the same recipients and keys; the escalation still follows if
    nobody acknowledges."""
    raw = await uow.conn.fetchval("SELECT working_hours FROM clinicians WHERE clinician_id = $1", data.clinician_id)
    if raw is None:
        return  # no working hours configured: the clinician, then the escalation
    at = data.raised_at
    try:
        hours = WorkingHours.parse(_j(raw))
        if hours is None or hours.within(at):
            return
    except WorkingHoursError:  # validated on the way in; never lose a page over it
        log.error("unreadable working hours; treating the alert as out of hours", clinician_id=data.clinician_id)
    oncall = [r for r in await _oncall_at(uow.conn, ctx, at, await episode_org(uow.conn, ctx, data.episode_id))
              if r["clinician_id"] != data.clinician_id]
    await uow.conn.execute("UPDATE alerts SET out_of_hours = true WHERE alert_id = $1", data.alert_id)
    if not oncall:
        await page_safety_fallback(uow, ctx, kind=rules.SAFETY_ALERT, cause_event_id=event.id,
                                   episode_id=data.episode_id, alert_id=data.alert_id, params=params)
    for r in oncall:
        await enqueue(uow, ctx, kind=rules.SAFETY_ALERT, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"oncall:{r['clinician_id']}", alert_id=data.alert_id, params=params)
    log.info("safety alert out of hours: on-call paged at once", alert_id=str(data.alert_id),
             oncall=[r["clinician_id"] for r in oncall])


# ---------------------------------------------------------------- partner webhooks
def structured(event: CloudEvent) -> str:
    """The body POSTed to partners: the CloudEvent in structured JSON mode (same for every retry)."""
    return json.dumps({"specversion": "1.0", "id": event.id, "source": event.source, "type": event.type,
                       "subject": event.subject, "time": format_time(event.time), "dataschema": event.dataschema,
                       "datacontenttype": "application/json", "data": event.data}, separators=(",", ":"), sort_keys=True)


async def fan_out_webhooks(uow: UnitOfWork, ctx: Ctx, event: CloudEvent, data) -> None:
    if event.type.startswith("rapport.notification.") and event.data.get("channel") == "webhook":
        return  # the record of a webhook delivery is not itself pushed (no feedback loop)
    # A subscription receives the events that happened from its creation on (service-clock time),
    # so re-processing history (a replay past the inbox) never pushes old events to a newer subscriber.
    # A partner receives only events of its own organisation's episodes: an episode of no known
    # organisation goes to no partner (nor to a subscription from before organisations, unless a
    # default organisation is configured).
    org = getattr(data, "organisation_id", None) or await episode_org(uow.conn, ctx, data.episode_id)
    if org is None:
        return
    subs = await uow.conn.fetch(
        "SELECT subscription_id FROM subscriptions WHERE deleted_at IS NULL AND $1 = ANY(event_types)"
        " AND (effective_from IS NULL OR effective_from <= $2) AND COALESCE(organisation_id, $3::text) = $4"
        " ORDER BY subscription_id", event.type, event.time, default_org(ctx), org)
    if not subs:
        return
    body = structured(event)
    for s in subs:
        await enqueue(uow, ctx, kind=rules.PARTNER_EVENT, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"partner:{s['subscription_id']}", params={"body": body, "event_type": event.type},
                      channels=["webhook"], language="none")


def event_models():
    return list(EVENT_MODELS.values())
