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

The sender wakes on the NOTIFY a handler sends with a new delivery (``rapport_shared.listen``),
reads and writes rows through the delivery repository of a unit of work the runtime makes
(``make_uow``), and spaces retries by the shared backoff (``rapport_shared.retry``, without jitter:
``RETRY_BASE_S`` · 2ⁿ up to ``RETRY_MAX_S``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator

import asyncpg

from rapport_shared.contracts import NotificationDeliveredV1, NotificationFailedV1
from rapport_shared.faults import crash_point
from rapport_shared.listen import NotifyLoop
from rapport_shared.logging import get_logger
from rapport_shared.retry import RetryPolicy
from rapport_shared import tracing

from ..adapters.channels import Outgoing, SendError
from ..adapters.deliveries import sender_channel
from ..domain.rules import TemplateMissing, Templates
from ..metrics import DELIVERIES, DELIVERY_SECONDS, IN_DOUBT
from .unit_of_work import NotifierUnitOfWork

log = get_logger("rapport.notifier.sender")


class Sender:
    def __init__(self, runtime, settings, channels: dict, templates: Templates) -> None:
        self.rt, self.s, self.channels, self.templates = runtime, settings, channels, templates
        self.sem = asyncio.Semaphore(settings.send_concurrency)
        self.inflight: set[asyncio.Task] = set()
        self.lease = timedelta(seconds=max(self.s.send_timeout_s * 3, self.s.send_timeout_s + 5))
        # Exact delays (no jitter): the next attempt's time is stored on the row, not slept on.
        self.backoff = RetryPolicy(initial_s=self.s.retry_base_s, max_s=self.s.retry_max_s, jitter_s=0)
        self.loop: NotifyLoop | None = None
        self._more = False  # the last pass filled slots and some are still free: go again at once

    @asynccontextmanager
    async def unit(self, *, transaction: bool = False) -> AsyncIterator[NotifierUnitOfWork]:
        """A unit of work on a pooled connection; in a transaction only where state and event go together."""
        async with self.rt.pool.acquire() as conn:
            if not transaction:
                yield self.rt.make_uow(conn, None)
                return
            async with conn.transaction():
                yield self.rt.make_uow(conn, None)

    # ------------------------------------------------------------ loop
    async def run(self, _runtime=None) -> None:
        self.loop = NotifyLoop(self.rt.pool, sender_channel(self.s.db_schema),
                               poll_interval_s=self.s.sender_poll_interval_s, what="sender")
        try:
            await self.loop.run(self.pass_once, self._idle)
        finally:
            for t in self.inflight:
                t.cancel()

    async def pass_once(self) -> None:
        await self.reclaim()
        claimed = await self.claim()
        for row in claimed:
            await self.sem.acquire()
            task = asyncio.create_task(self.deliver(row))
            self.inflight.add(task)
            task.add_done_callback(self._done)
        self._more = bool(claimed) and self.sem._value > 0

    async def _idle(self) -> None:
        if not self._more and self.loop is not None:
            await self.loop.sleep_until_woken()

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self.sem.release()
        if self.loop is not None:
            self.loop.wake.set()

    async def reclaim(self) -> None:
        async with self.unit() as uow:
            n = await uow.deliveries.reclaim()
        if n:
            log.warning("in-doubt deliveries (died mid-send): the provider is asked where a status lookup is"
                        " configured, else they are sent again with the same key", count=str(n))

    async def claim(self) -> list[asyncpg.Record]:
        free = self.sem._value
        if free <= 0:
            return []
        async with self.unit() as uow:
            return await uow.deliveries.claim(free, self.lease)

    # ------------------------------------------------------------ one delivery
    async def deliver(self, row: asyncpg.Record) -> None:
        # A span continuing the trace of the event that caused the notification (ids only).
        with tracing.delivery_span(row["notification_id"], row["cause_event_id"], row["kind"], row["channel"]):
            await self._deliver(row)

    async def _deliver(self, row: asyncpg.Record) -> None:
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
                return await self._settled(row, asked=True)
        else:
            log.warning("in-doubt delivery sent again with the same key (no status lookup for this channel)",
                        notification_id=str(nid), channel=name)
        IN_DOUBT.labels(name, "resent").inc()
        return await self._settled(row, asked=False)

    async def _settled(self, row, *, asked: bool) -> bool:
        async with self.unit() as uow:
            return await uow.deliveries.settle_doubt(row["notification_id"], asked=asked)

    async def _doubt_window_over(self, row) -> bool:
        async with self.unit() as uow:
            return await uow.deliveries.doubt_window_over(row["notification_id"], timedelta(seconds=self.s.retry_for_s))

    async def _lookup_failed(self, row, err: SendError) -> None:
        """Nothing was sent: back to ``ready`` with backoff, still in doubt; the claim was no send attempt."""
        delay = self.backoff.delay(row["status_lookups"] + 1)
        log.warning("status lookup for an in-doubt delivery failed; nothing sent, will ask again",
                    notification_id=str(row["notification_id"]), retry_in_s=delay, error=str(err))
        async with self.unit() as uow:
            await uow.deliveries.lookup_failed(row["notification_id"], err.stored, timedelta(seconds=delay))

    # ------------------------------------------------------------ helpers
    async def prepare(self, row) -> Outgoing:
        role, _, rid = row["recipient_ref"].partition(":")
        params = json.loads(row["params"]) if isinstance(row["params"], str) else dict(row["params"])
        nid, key = str(row["notification_id"]), row["idem_key"]
        async with self.unit() as uow:
            if row["channel"] == "webhook":
                sub = await uow.subscriptions.get(uuid.UUID(rid))
                if sub is None or sub["deleted_at"] is not None:
                    raise SendError("subscription_deleted", retryable=False)
                return Outgoing(nid, key, sub["url"], body=params["body"], secret=sub["secret"])
            if role == "patient":
                p = await uow.patients.get(rid)
                consent = (p and p["channel_consent"]) or {}
                address = p and (p["email"] if row["channel"] == "email" else p["phone"])
                if not address or consent.get(row["channel"]) is not True:
                    raise SendError("no_contact_or_consent", retryable=False)  # erased or consent withdrawn
            else:
                c = await uow.clinicians.get(rid)
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
        async with self.unit(transaction=True) as uow:
            finished_at = uow.now()
            if not await uow.deliveries.finish(row["notification_id"], status, finished_at, err and err.stored,
                                               lookup_accepted=lookup_accepted):
                return
            common = dict(episode_id=row["episode_id"], notification_id=row["notification_id"], kind=row["kind"],
                          recipient_ref=row["recipient_ref"], channel=row["channel"], cause_event_id=row["cause_event_id"],
                          organisation_id=await uow.episodes.organisation_of(row["episode_id"], uow.default_org))
            if status == "delivered":
                await uow.emit(NotificationDeliveredV1(**common, delivered_at=uow.now()),
                               event_id=str(uuid.uuid5(row["notification_id"], "delivered")))
            elif status == "failed":
                await uow.emit(NotificationFailedV1(**common, error_code=err.code, attempts=row["attempts"],
                                                    failed_at=uow.now()),
                               event_id=str(uuid.uuid5(row["notification_id"], "failed")))
        DELIVERIES.labels(row["channel"], row["kind"], status).inc()  # committed
        if status == "delivered":  # queued → accepted, on the clock the row was written with
            DELIVERY_SECONDS.labels(row["channel"], row["kind"]).observe(
                max(0.0, (finished_at - row["created_at"]).total_seconds()))

    async def _failed_attempt(self, row, err: SendError, doubt: bool = False) -> None:
        async with self.unit() as uow:
            give_up = not err.retryable or await uow.deliveries.retry_window_over(
                row["notification_id"], timedelta(seconds=self.s.retry_for_s))
        if give_up:
            log.error("delivery failed for good", notification_id=str(row["notification_id"]), error=str(err))
            await self._finish(row, "failed", err)
            return
        delay = self.backoff.delay(row["attempts"])
        if doubt:  # not asked before an interrupted send could have settled at the provider: the lease's bound
            delay = max(delay, self.lease.total_seconds())
        log.warning("delivery attempt failed; will retry", notification_id=str(row["notification_id"]),
                    attempt=row["attempts"], retry_in_s=delay, error=str(err), in_doubt=doubt)
        async with self.unit() as uow:
            await uow.deliveries.retry_later(row["notification_id"], err.stored, timedelta(seconds=delay), in_doubt=doubt)
