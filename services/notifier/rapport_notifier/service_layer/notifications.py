"""Writing a notification: who is reached on which channel, one delivery row per channel keyed by
its idempotency key (the sender delivers them), partner webhooks and the safety fallback. Called by
the handlers inside their unit of work."""

from __future__ import annotations

import uuid
from datetime import datetime

from rapport_shared.contracts import NotificationFailedV1
from rapport_shared.envelope import CloudEvent
from rapport_shared.hours import QuietHours, QuietHoursError
from rapport_shared.logging import get_logger

from ..domain import rules
from ..metrics import DELIVERIES, SAFETY_FALLBACK
from ..settings import FALLBACK_EMAIL_REF
from .unit_of_work import NotifierUnitOfWork

log = get_logger("rapport.notifier")


async def episode_org(uow: NotifierUnitOfWork, episode_id) -> str | None:
    """The organisation an episode belongs to here (scopes its alerts' on-call paging and its
    events' partner webhooks; named on the delivery events this service emits)."""
    return await uow.episodes.organisation_of(episode_id, uow.default_org)


async def quiet_hours(uow: NotifierUnitOfWork, person_id: str) -> QuietHours | None:
    raw = await uow.patients.quiet_hours(person_id)
    try:
        return QuietHours.parse(raw) if raw is not None else None
    except QuietHoursError:
        return None


async def local_time(uow: NotifierUnitOfWork, person_id: str | None, t: datetime) -> tuple[str, str]:
    """``t`` in the patient's time zone (that of their quiet hours), else UTC; and the zone."""
    qh = await quiet_hours(uow, person_id) if person_id else None
    return rules.local_time(t, qh.tz if qh else None)


async def recipient_channels(uow: NotifierUnitOfWork, recipient_ref: str, urgent: bool) -> tuple[list[str], str]:
    """(channels, language) for a recipient, honouring consent and preference."""
    role, _, rid = recipient_ref.partition(":")
    s = uow.settings
    lang = s.default_language
    if role == "patient":
        p = await uow.patients.get(rid)
        pref = await uow.patients.preferences(rid)
        # An HTTP preference overrides the contact record's language; a language the templates
        # cannot serve completely falls back to the default.
        wanted = (pref and pref["language"]) or (p and p["language"])
        languages = uow.languages
        if wanted and (not languages or wanted in languages):
            lang = wanted
        elif wanted:
            log.warning("patient language has no complete template set; using the default",
                        recipient_ref=recipient_ref, language=wanted, default=lang)
        return rules.patient_channels(p), lang
    c = await uow.clinicians.get(rid)
    if c is None:
        return (["log"] if s.log_channel_fallback else []), lang
    channels = list(c["channels"]) or (["log"] if s.log_channel_fallback else [])
    return (channels if urgent else channels[:1]), c["language"]


async def enqueue(uow: NotifierUnitOfWork, *, kind: str, cause_event_id: str | uuid.UUID, episode_id: uuid.UUID,
                  recipient_ref: str, params: dict, alert_id: uuid.UUID | None = None,
                  channels: list[str] | None = None, language: str | None = None, about: str | None = None,
                  once_per: str | None = None) -> int:
    """Write the deliveries of one notification (one row per channel); an existing key is left alone.
    ``once_per`` replaces the cause event at the head of the key for a notification sent once per
    thing whatever event causes it (``episode:<id>``: the referrer summary)."""
    s = uow.settings
    if channels is None:
        channels, language = await recipient_channels(uow, recipient_ref, kind in rules.URGENT)
    language = language or s.default_language
    if not channels:
        channels = ["none"]  # recorded as failed below: nobody reachable is an outcome to audit
    cause = uuid.UUID(str(cause_event_id))
    n = 0
    for channel in channels:
        key = rules.idem_key(once_per or cause_event_id, recipient_ref, channel, kind, about)
        nid = rules.notification_id(key)
        ready = channel != "none"
        inserted = await uow.deliveries.add(
            notification_id=nid, idem_key=key, cause_event_id=cause, episode_id=episode_id, kind=kind,
            recipient_ref=recipient_ref, channel=channel, language=language, params=params, alert_id=alert_id,
            status="ready" if ready else "failed", created_at=uow.now(),
            last_error=None if ready else "no_channel", finished_at=None if ready else uow.now())
        if inserted and not ready and not s.replay_mode:  # replay mode emits nothing
            await uow.emit(NotificationFailedV1(episode_id=episode_id, notification_id=nid, kind=kind,
                                                recipient_ref=recipient_ref, channel="none",
                                                cause_event_id=cause, error_code="no_channel",
                                                attempts=1, failed_at=uow.now(),
                                                organisation_id=await episode_org(uow, episode_id)),
                           event_id=str(uuid.uuid5(nid, "failed")))
            # Counted inside the consumer's transaction: a rolled-back, redelivered event counts again.
            DELIVERIES.labels("none", kind, "no_channel").inc()
        n += bool(inserted)
    if n:
        await uow.deliveries.wake_sender()
    return n


async def record_skipped(uow: NotifierUnitOfWork, *, kind: str, cause_event_id: str | uuid.UUID,
                         episode_id: uuid.UUID, recipient_ref: str, reason: str, once_per: str | None = None) -> bool:
    """A notification that had nowhere to go, recorded as a ``skipped`` delivery (channel ``none``,
    ``reason`` as its error) so the delivery log says why nothing was sent. No event: nothing was
    attempted. False when its key already has a row."""
    key = rules.idem_key(once_per or cause_event_id, recipient_ref, "none", kind)
    inserted = await uow.deliveries.add(
        notification_id=rules.notification_id(key), idem_key=key, cause_event_id=uuid.UUID(str(cause_event_id)),
        episode_id=episode_id, kind=kind, recipient_ref=recipient_ref, channel="none", language="none", params={},
        alert_id=None, status="skipped", created_at=uow.now(), last_error=reason, finished_at=uow.now())
    if inserted:
        DELIVERIES.labels("none", kind, "skipped").inc()  # inside the transaction, as no_channel
    return inserted


async def page_safety_fallback(uow: NotifierUnitOfWork, *, kind: str, cause_event_id, episode_id, alert_id,
                               params: dict) -> None:
    """Nobody on call for the alert's organisation: page ``RAPPORT_SAFETY_FALLBACK`` instead, as a
    delivery like any other (the delivery log, its delivered/failed event, the metrics), under the
    key ``<cause>/<fallback ref>/<channel>/<kind>``. With no fallback configured (only outside
    production) the page is recorded as a failed ``no_channel`` delivery to ``oncall:fallback``
    (its ``notification.failed`` event and ``RapportSafetyNotificationNotDelivered``): never only
    a log line."""
    target = uow.settings.safety_fallback_recipient()
    ref, channels = target if target is not None else (FALLBACK_EMAIL_REF, [])
    log.error("safety page with nobody on call: paging the fallback" if target else
              "safety page with nobody on call and no RAPPORT_SAFETY_FALLBACK: recorded as not delivered",
              alert_id=str(alert_id), kind=kind, recipient_ref=ref)
    await enqueue(uow, kind=kind, cause_event_id=cause_event_id, episode_id=episode_id, recipient_ref=ref,
                  alert_id=alert_id, params={**params, "fallback": True}, channels=channels,
                  language=None if channels is None else uow.settings.default_language)
    # Counted inside the transaction (as DELIVERIES no_channel): a rolled-back firing counts again.
    SAFETY_FALLBACK.labels(kind, "paged" if target else "unconfigured").inc()


async def page_oncall(uow: NotifierUnitOfWork, *, kind: str, at: datetime, cause_event_id, episode_id, alert_id,
                      params: dict, besides: str | None = None) -> list[str]:
    """Page whoever of the episode's organisation is on call at ``at`` (but ``besides``), or the
    safety fallback when nobody is; the clinicians paged."""
    oncall = [c for c in await uow.oncall.at(at, await episode_org(uow, episode_id), uow.default_org) if c != besides]
    if not oncall:
        await page_safety_fallback(uow, kind=kind, cause_event_id=cause_event_id, episode_id=episode_id,
                                   alert_id=alert_id, params=params)
    for clinician_id in oncall:
        await enqueue(uow, kind=kind, cause_event_id=cause_event_id, episode_id=episode_id,
                      recipient_ref=f"oncall:{clinician_id}", alert_id=alert_id, params=params)
    return oncall


async def fan_out_webhooks(uow: NotifierUnitOfWork, event: CloudEvent, data) -> None:
    if not rules.pushed_to_partners(event):
        return
    # A subscription receives the events that happened from its creation on (service-clock time),
    # so re-processing history (a replay past the inbox) never pushes old events to a newer subscriber.
    # A partner receives only events of its own organisation's episodes: an episode of no known
    # organisation goes to no partner (nor to a subscription from before organisations, unless a
    # default organisation is configured).
    org = getattr(data, "organisation_id", None) or await episode_org(uow, data.episode_id)
    if org is None:
        return
    subs = await uow.subscriptions.matching(event.type, event.time, org, uow.default_org)
    if not subs:
        return
    body = rules.structured(event)
    for subscription_id in subs:
        await enqueue(uow, kind=rules.PARTNER_EVENT, cause_event_id=event.id, episode_id=data.episode_id,
                      recipient_ref=f"partner:{subscription_id}", params={"body": body, "event_type": event.type},
                      channels=["webhook"], language="none")
