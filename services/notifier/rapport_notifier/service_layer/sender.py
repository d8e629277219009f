"""The sender: delivers ``notifications`` rows to the outside world, at least once per key and,
short of a crash in the send→record window that cannot be settled by asking the provider, at
most once (docs/notifier.md, "Exactly once").

Per row: (1) claim — ``ready`` → ``sending`` with a lease, committed BEFORE the send;
(2) send over the channel with the idempotency key, bounded by a timeout; (3) record —
``delivered`` + ``rapport.notification.delivered.v1`` in one transaction. A retryable failure puts
the row back to ``ready`` with exponential backoff; past ``retry_for_s`` (or a permanent error)
it is ``failed`` + ``rapport.notification.failed.v1``. Sends run concurrently
(``send_concurrency``), each with its own timeout, so an endpoint that hangs or fails holds one
slot, never the others.

A row whose lease expired while ``sending`` (the process died mid-send) is *in doubt*
(``in_doubt`` + 1, ``doubt_since`` set); so is, on a channel with a status lookup, a row whose
attempt broke off without a definite answer (timeout, connection cut: ``maybe_delivered``; retried
no sooner than the lease, so an abandoned send has finished). Before anything is sent again the
doubt is settled:
- the channel has a status lookup (email with ``EMAIL_STATUS_URL``): the provider is asked
  whether it accepted the message. Accepted → recorded ``delivered`` (with its event) without
  sending; not accepted → sent as usual. Either way ``in_doubt_resolved`` + 1. A lookup that
  fails is retried with backoff and nothing is sent, for up to ``retry_for_s`` from
  ``doubt_since``; after that the row is sent again blindly (logged);
- no lookup (SMS, webhooks, log; email without ``EMAIL_STATUS_URL``): sent again with the same
  key (``in_doubt_resends`` + 1) — at least once, the duplicate identifiable by its key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import asyncpg

from rapport_shared.contracts import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.faults import crash_point
from rapport_shared.logging import get_logger
from rapport_shared.uow import UnitOfWork

from ..adapters.channels import Outgoing, SendError
from ..domain.rules import TemplateMissing, Templates
from ..metrics import DELIVERIES, IN_DOUBT
from .handlers import SENDER_CHANNEL, organisation_of

log = get_logger("rapport.notifier.sender")


class Sender:
    def __init__(self, runtime, settings, channels: dict, templates: Templates) -> None:
        self.rt, self.s, self.channels, self.templates = runtime, settings, channels, templates
        self.sem = asyncio.Semaphore(settings.send_concurrency)
        self.inflight: set[asyncio.Task] = set()
        self.wake = asyncio.Event()
        self.lease = timedelta(seconds=max(self.s.send_timeout_s * 3, self.s.send_timeout_s + 5))

    # ------------------------------------------------------------ loop
    async def run(self, _runtime=None) -> None:
        listener = None
        channel = f"{self.s.db_schema}_{SENDER_CHANNEL}"
        while True:
            try:
                if listener is None:
                    listener = await self.rt.pool.acquire()
                    await listener.add_listener(channel, lambda *_: self.wake.set())
                self.wake.clear()
                await self.reclaim()
                claimed = await self.claim()
                for row in claimed:
                    await self.sem.acquire()
                    task = asyncio.create_task(self.deliver(row))
                    self.inflight.add(task)
                    task.add_done_callback(self._done)
                if claimed and self.sem._value > 0:
                    continue
                try:
                    await asyncio.wait_for(self.wake.wait(), self.s.sender_poll_interval_s)
                except asyncio.TimeoutError:
                    pass
            except asyncio.CancelledError:
                for t in self.inflight:
                    t.cancel()
                if listener is not None:
                    await self.rt.pool.release(listener)
                raise
            except Exception as exc:
                log.warning("sender pass failed; will retry", error=type(exc).__name__)
                if listener is not None:
                    try:
                        await self.rt.pool.release(listener)
                    except Exception:
                        pass
                    listener = None
                await asyncio.sleep(1.0)

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self.sem.release()
        self.wake.set()

    async def reclaim(self) -> None:
        async with self.rt.pool.acquire() as conn:
            n = await conn.execute(
                # A row already in doubt (the process died while settling it) stays the same doubt.
                "UPDATE notifications SET status = 'ready', lease_until = NULL, next_attempt_at = now(),"
                " in_doubt = in_doubt + (doubt_since IS NULL)::int, doubt_since = COALESCE(doubt_since, now())"
                " WHERE status = 'sending' AND lease_until < now()")
        if n.split()[-1] != "0":
            log.warning("in-doubt deliveries (died mid-send): the provider is asked where a status lookup is"
                        " configured, else they are sent again with the same key", count=n.split()[-1])

    async def claim(self) -> list[asyncpg.Record]:
        free = self.sem._value
        if free <= 0:
            return []
        async with self.rt.pool.acquire() as conn:
            return await conn.fetch(
                "UPDATE notifications SET status = 'sending', attempts = attempts + 1, lease_until = now() + $2::interval,"
                " first_attempt_at = COALESCE(first_attempt_at, now()) WHERE notification_id IN ("
                "  SELECT notification_id FROM notifications WHERE status = 'ready' AND next_attempt_at <= now()"
                "  ORDER BY next_attempt_at, created_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *",
                free, self.lease)

    # ------------------------------------------------------------ one delivery
    async def deliver(self, row: asyncpg.Record) -> None:
        nid = row["notification_id"]
        try:
            if self.s.replay_mode:
                await self._finish(row, "suppressed", None)
                return
            channel = self.channels.get(row["channel"])
            if channel is None:
                raise SendError("channel_unconfigured", row["channel"], retryable=False)
            if row["doubt_since"] is not None and not await self.settle_doubt(row, channel):
                return  # the provider had it (recorded), or nobody knows yet (retried later)
            msg = await self.prepare(row)
            crash_point("sender.before_send", row["recipient_ref"])
            await asyncio.wait_for(channel.send(msg), self.s.send_timeout_s)
            crash_point("sender.after_send", row["recipient_ref"])
            await self._finish(row, "delivered", None)
            crash_point("sender.after_record", row["recipient_ref"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Classified, never str(exc)/repr(exc) (a channel's exception may quote the address).
            err = exc if isinstance(exc, SendError) else SendError(
                "timeout" if isinstance(exc, asyncio.TimeoutError) else "internal_error",
                "" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__, maybe_delivered=True)
            # Where the provider can be asked, an attempt that broke off without a definite answer
            # (timeout, connection cut mid-transaction) is in doubt like a crash: asked before resending.
            doubt = err.maybe_delivered and getattr(self.channels.get(row["channel"]), "has_status_lookup", False)
            try:
                await self._failed_attempt(row, err, doubt=doubt)
            except Exception as exc2:  # the lease will expire and the row come back
                log.warning("could not record a failed attempt", notification_id=str(nid), error=type(exc2).__name__)

    # ------------------------------------------------------------ in doubt
    async def settle_doubt(self, row: asyncpg.Record, channel) -> bool:
        """Settle an in-doubt row before anything is sent again; True = send it (now ours to send)."""
        nid, name = row["notification_id"], row["channel"]
        if getattr(channel, "has_status_lookup", False):
            try:
                accepted = await asyncio.wait_for(channel.was_accepted(str(nid)), self.s.send_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = exc if isinstance(exc, SendError) else SendError(
                    "status_lookup_timeout" if isinstance(exc, asyncio.TimeoutError) else "status_lookup_failed",
                    type(exc).__name__)
                if not await self._doubt_window_over(row):
                    await self._lookup_failed(row, err)
                    IN_DOUBT.labels(name, "lookup_failed").inc()
                    return False
                log.warning("no status lookup answered within RETRY_FOR_S; sending the in-doubt delivery again with"
                            " the same key (may arrive twice)", notification_id=str(nid), channel=name, error=str(err))
            else:
                crash_point("sender.after_lookup", row["recipient_ref"])
                if accepted:
                    log.info("in-doubt delivery was accepted by the provider: recorded, not sent again",
                             notification_id=str(nid), channel=name)
                    await self._finish(row, "delivered", None, lookup_accepted=True)
                    IN_DOUBT.labels(name, "accepted").inc()
                    return False
                log.info("in-doubt delivery was not accepted by the provider: sending", notification_id=str(nid),
                         channel=name)
                IN_DOUBT.labels(name, "not_accepted").inc()
                return await self._settled(row, "in_doubt_resolved = in_doubt_resolved + 1, status_lookups = status_lookups + 1")
        else:
            log.warning("in-doubt delivery sent again with the same key (no status lookup for this channel)",
                        notification_id=str(nid), channel=name)
        IN_DOUBT.labels(name, "resent").inc()
        return await self._settled(row, "in_doubt_resends = in_doubt_resends + 1")

    async def _settled(self, row, counters: str) -> bool:
        async with self.rt.pool.acquire() as conn:
            return bool(await conn.fetchval(
                f"UPDATE notifications SET doubt_since = NULL, {counters}"
                " WHERE notification_id = $1 AND status = 'sending' RETURNING true", row["notification_id"]))

    async def _doubt_window_over(self, row) -> bool:
        async with self.rt.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT doubt_since + $2::interval < now() FROM notifications WHERE notification_id = $1",
                row["notification_id"], timedelta(seconds=self.s.retry_for_s)))

    async def _lookup_failed(self, row, err: SendError) -> None:
        """Nothing was sent: back to ``ready`` with backoff, still in doubt; the claim was no send attempt."""
        delay = min(self.s.retry_base_s * 2 ** row["status_lookups"], self.s.retry_max_s)
        log.warning("status lookup for an in-doubt delivery failed; nothing sent, will ask again",
                    notification_id=str(row["notification_id"]), retry_in_s=delay, error=str(err))
        async with self.rt.pool.acquire() as conn:
            await conn.execute(
                "UPDATE notifications SET status = 'ready', lease_until = NULL, attempts = attempts - 1,"
                " status_lookups = status_lookups + 1, last_error = $2, next_attempt_at = now() + $3::interval"
                " WHERE notification_id = $1 AND status = 'sending'",
                row["notification_id"], err.stored, timedelta(seconds=delay))

    # ------------------------------------------------------------ helpers
    async def prepare(self, row) -> Outgoing:
        role, _, rid = row["recipient_ref"].partition(":")
        params = json.loads(row["params"]) if isinstance(row["params"], str) else dict(row["params"])
        nid, key = str(row["notification_id"]), row["idem_key"]
        async with self.rt.pool.acquire() as conn:
            if row["channel"] == "webhook":
                sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE subscription_id = $1", uuid.UUID(rid))
                if sub is None or sub["deleted_at"] is not None:
                    raise SendError("subscription_deleted", retryable=False)
                return Outgoing(nid, key, sub["url"], body=params["body"], secret=sub["secret"])
            if role == "patient":
                p = await conn.fetchrow("SELECT * FROM patients WHERE person_id = $1", rid)
                consent = (json.loads(p["channel_consent"]) if p and isinstance(p["channel_consent"], str)
                           else (dict(p["channel_consent"]) if p else {}))
                address = p and (p["email"] if row["channel"] == "email" else p["phone"])
                if not address or consent.get(row["channel"]) is not True:
                    raise SendError("no_contact_or_consent", retryable=False)  # erased or consent withdrawn
            else:
                c = await conn.fetchrow("SELECT * FROM clinicians WHERE clinician_id = $1", rid)
                address = row["recipient_ref"] if row["channel"] == "log" else (
                    self.s.fallback_address(row["recipient_ref"], row["channel"])  # RAPPORT_SAFETY_FALLBACK
                    or c and (c["email"] if row["channel"] == "email" else c["phone"]))
                if not address:
                    raise SendError("no_contact", retryable=False)
        try:
            rendered = self.templates.render(row["kind"], row["language"], params)
        except TemplateMissing:
            rendered = self.templates.render(row["kind"], self.s.default_language, params)
        return Outgoing(nid, key, address, subject=rendered.subject, body=rendered.body)

    async def _finish(self, row, status: str, err: SendError | None, lookup_accepted: bool = False) -> None:
        """Record the outcome (+ its event) if the row is still ours. ``lookup_accepted``: an in-doubt
        row the provider says it accepted — delivered by the earlier attempt, this claim sent nothing."""
        settle = (", doubt_since = NULL, in_doubt_resolved = in_doubt_resolved + 1, status_lookups = status_lookups + 1,"
                  " attempts = attempts - 1") if lookup_accepted else ""
        async with self.rt.pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, self.rt.outbox, self.rt.clock)
            done = await conn.fetchval(
                f"UPDATE notifications SET status = $2, finished_at = $3, lease_until = NULL, last_error = $4{settle}"
                " WHERE notification_id = $1 AND status = 'sending' RETURNING true",
                row["notification_id"], status, uow.now(), err and err.stored)
            if not done:
                return
            common = dict(episode_id=row["episode_id"], notification_id=row["notification_id"], kind=row["kind"],
                          recipient_ref=row["recipient_ref"], channel=row["channel"], cause_event_id=row["cause_event_id"],
                          organisation_id=await organisation_of(conn, row["episode_id"],
                                                                self.s.default_organisation or None))
            if status == "delivered":
                await uow.emit(NotificationDeliveredV1(**common, delivered_at=uow.now()),
                               event_id=str(uuid.uuid5(row["notification_id"], "delivered")))
            elif status == "failed":
                await uow.emit(NotificationFailedV1(**common, error_code=err.code, attempts=row["attempts"],
                                                    failed_at=uow.now()),
                               event_id=str(uuid.uuid5(row["notification_id"], "failed")))
        DELIVERIES.labels(row["channel"], row["kind"], status).inc()  # committed

    async def _failed_attempt(self, row, err: SendError, doubt: bool = False) -> None:
        async with self.rt.pool.acquire() as conn:
            give_up = not err.retryable or await conn.fetchval(
                "SELECT first_attempt_at + $2::interval < now() FROM notifications WHERE notification_id = $1",
                row["notification_id"], timedelta(seconds=self.s.retry_for_s))
        if give_up:
            log.error("delivery failed for good", notification_id=str(row["notification_id"]), error=str(err))
            await self._finish(row, "failed", err)
            return
        delay = min(self.s.retry_base_s * 2 ** (row["attempts"] - 1), self.s.retry_max_s)
        if doubt:  # not asked before an interrupted send could have settled at the provider: the lease's bound
            delay = max(delay, self.lease.total_seconds())
        log.warning("delivery attempt failed; will retry", notification_id=str(row["notification_id"]),
                    attempt=row["attempts"], retry_in_s=delay, error=str(err), in_doubt=doubt)
        mark = (", in_doubt = in_doubt + (doubt_since IS NULL)::int, doubt_since = COALESCE(doubt_since, now())"
                if doubt else "")
        async with self.rt.pool.acquire() as conn:
            await conn.execute(
                f"UPDATE notifications SET status = 'ready', lease_until = NULL, last_error = $2{mark},"
                " next_attempt_at = now() + $3::interval WHERE notification_id = $1 AND status = 'sending'",
                row["notification_id"], err.stored, timedelta(seconds=delay))
