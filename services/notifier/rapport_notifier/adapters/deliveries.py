"""The delivery log (``notifications``): one row per idempotency key, written by the handlers,
worked by the sender (claim → send → record, ``service_layer/sender.py``), read by the HTTP log.

Rows never hold contact details: the address is resolved when sending."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import asyncpg

from ..domain.rules import URGENT

SENDER_CHANNEL = "notifier_sender"


def sender_channel(schema: str) -> str:
    """The NOTIFY channel that wakes the sender (a delivery was written)."""
    return f"{schema}_{SENDER_CHANNEL}"


def _count(status: str) -> int:
    return int(status.split()[-1])


class DeliveryRepository:
    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn, self.schema = conn, schema

    # ------------------------------------------------------------ written by the handlers
    async def add(self, *, notification_id: uuid.UUID, idem_key: str, cause_event_id: uuid.UUID, episode_id: uuid.UUID,
                  kind: str, recipient_ref: str, channel: str, language: str, params: dict,
                  alert_id: uuid.UUID | None, status: str, created_at: datetime, last_error: str | None,
                  finished_at: datetime | None) -> bool:
        """False when the key already has its row (left alone)."""
        return bool(await self.conn.fetchval(
            "INSERT INTO notifications (notification_id, idem_key, cause_event_id, episode_id, kind, recipient_ref,"
            " channel, language, params, alert_id, status, created_at, last_error, finished_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9::jsonb,$10,$11,$12,$13,$14) ON CONFLICT (idem_key) DO NOTHING RETURNING true",
            notification_id, idem_key, cause_event_id, episode_id, kind, recipient_ref, channel, language,
            json.dumps(params, default=str), alert_id, status, created_at, last_error, finished_at))

    async def wake_sender(self) -> None:
        """Delivered when the transaction commits."""
        await self.conn.execute("SELECT pg_notify($1, '')", sender_channel(self.schema))

    async def cancel_unsent_for_alert(self, alert_id: uuid.UUID, at: datetime, reason: str) -> None:
        await self.conn.execute("UPDATE notifications SET status = 'cancelled', finished_at = $2, last_error = $3"
                                " WHERE alert_id = $1 AND status = 'ready'", alert_id, at, reason)

    async def scrub_errors(self, recipient_ref: str) -> None:
        """Keep only the class of the recorded errors of a recipient (an erased patient's)."""
        # (a patients row deleted does this in a trigger, migration 0008; also without one)
        await self.conn.execute("UPDATE notifications SET last_error = split_part(error_class(last_error), ':', 1)"
                                " WHERE recipient_ref = $1 AND last_error IS NOT NULL", recipient_ref)

    # ------------------------------------------------------------ the delivery log (HTTP)
    async def log(self, *, episode_id: uuid.UUID | None, recipient_ref: str | None, channel: str | None,
                  status: str | None, kind: str | None, limit: int, after: tuple[datetime | None, uuid.UUID | None],
                  organisation_id: str | None, assigned_to: str | None, person_id: str | None,
                  default_org: str | None) -> list[dict]:
        """Oldest first, after the keyset ``after`` (created_at, notification_id), within the
        caller's reach (organisation, assigned clinician, person; None: no such limit)."""
        since_at, since_id = after
        rows = await self.conn.fetch(
            "SELECT n.* FROM notifications n LEFT JOIN episodes e ON e.episode_id = n.episode_id"
            " LEFT JOIN alerts a ON a.alert_id = n.alert_id"
            " WHERE ($1::uuid IS NULL OR n.episode_id = $1) AND ($2::text IS NULL OR n.recipient_ref = $2)"
            " AND ($3::text IS NULL OR n.channel = $3) AND ($4::text IS NULL OR n.status = $4)"
            " AND ($5::text IS NULL OR n.kind = $5)"
            " AND ($7::timestamptz IS NULL OR (n.created_at, n.notification_id) > ($7, $8::uuid))"
            " AND ($9::text IS NULL OR COALESCE(e.organisation_id, $12::text) = $9)"
            " AND ($10::text IS NULL OR e.clinician_id = $10 OR a.clinician_id = $10)"
            " AND ($11::text IS NULL OR e.person_id = $11)"
            " ORDER BY n.created_at, n.notification_id LIMIT $6",
            episode_id, recipient_ref, channel, status, kind, limit, since_at, since_id,
            organisation_id, assigned_to, person_id, default_org)
        return [{**r, "params": json.loads(r["params"]) if isinstance(r["params"], str) else r["params"]} for r in rows]

    # ------------------------------------------------------------ the sender (wall-clock times)
    async def reclaim(self) -> int:
        """Rows whose lease expired while ``sending`` (the process died mid-send) back to
        ``ready``, in doubt; how many."""
        return _count(await self.conn.execute(
            # A row already in doubt (the process died while settling it) stays the same doubt.
            "UPDATE notifications SET status = 'ready', lease_until = NULL, next_attempt_at = now(),"
            " in_doubt = in_doubt + (doubt_since IS NULL)::int, doubt_since = COALESCE(doubt_since, now())"
            " WHERE status = 'sending' AND lease_until < now()"))

    async def claim(self, limit: int, lease: timedelta) -> list[asyncpg.Record]:
        """Up to ``limit`` due ``ready`` rows, now ``sending`` under a lease (one attempt more).
        Urgent kinds (safety pages) first: a page never waits behind a backlog of routine sends."""
        return await self.conn.fetch(
            "UPDATE notifications SET status = 'sending', attempts = attempts + 1, lease_until = now() + $2::interval,"
            " first_attempt_at = COALESCE(first_attempt_at, now()) WHERE notification_id IN ("
            "  SELECT notification_id FROM notifications WHERE status = 'ready' AND next_attempt_at <= now()"
            "  ORDER BY (kind = ANY($3::text[])) DESC, next_attempt_at, created_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            " RETURNING *",
            limit, lease, sorted(URGENT))

    async def settle_doubt(self, notification_id: uuid.UUID, *, asked: bool) -> bool:
        """An in-doubt row ours to send: the provider said it had not accepted it (``asked``), or
        it is sent again without asking. False when the row is no longer ours."""
        counters = ("in_doubt_resolved = in_doubt_resolved + 1, status_lookups = status_lookups + 1" if asked
                    else "in_doubt_resends = in_doubt_resends + 1")
        return bool(await self.conn.fetchval(
            f"UPDATE notifications SET doubt_since = NULL, {counters}"
            " WHERE notification_id = $1 AND status = 'sending' RETURNING true", notification_id))

    async def doubt_window_over(self, notification_id: uuid.UUID, window: timedelta) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT doubt_since + $2::interval < now() FROM notifications WHERE notification_id = $1",
            notification_id, window))

    async def retry_window_over(self, notification_id: uuid.UUID, window: timedelta) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT first_attempt_at + $2::interval < now() FROM notifications WHERE notification_id = $1",
            notification_id, window))

    async def lookup_failed(self, notification_id: uuid.UUID, error: str, delay: timedelta) -> None:
        """Nothing was sent: back to ``ready`` after ``delay``, still in doubt; the claim was no send attempt."""
        await self.conn.execute(
            "UPDATE notifications SET status = 'ready', lease_until = NULL, attempts = attempts - 1,"
            " status_lookups = status_lookups + 1, last_error = $2, next_attempt_at = now() + $3::interval"
            " WHERE notification_id = $1 AND status = 'sending'", notification_id, error, delay)

    async def retry_later(self, notification_id: uuid.UUID, error: str, delay: timedelta, *, in_doubt: bool) -> None:
        """A failed attempt: back to ``ready`` after ``delay`` (``in_doubt``: the send may have arrived)."""
        mark = (", in_doubt = in_doubt + (doubt_since IS NULL)::int, doubt_since = COALESCE(doubt_since, now())"
                if in_doubt else "")
        await self.conn.execute(
            f"UPDATE notifications SET status = 'ready', lease_until = NULL, last_error = $2{mark},"
            " next_attempt_at = now() + $3::interval WHERE notification_id = $1 AND status = 'sending'",
            notification_id, error, delay)

    async def finish(self, notification_id: uuid.UUID, status: str, at: datetime, error: str | None, *,
                     lookup_accepted: bool = False) -> bool:
        """Record the outcome if the row is still ours (``sending``). ``lookup_accepted``: an
        in-doubt row the provider says it accepted (the earlier attempt delivered it; this claim
        sent nothing)."""
        settle = (", doubt_since = NULL, in_doubt_resolved = in_doubt_resolved + 1, status_lookups = status_lookups + 1,"
                  " attempts = attempts - 1") if lookup_accepted else ""
        return bool(await self.conn.fetchval(
            f"UPDATE notifications SET status = $2, finished_at = $3, lease_until = NULL, last_error = $4{settle}"
            " WHERE notification_id = $1 AND status = 'sending' RETURNING true", notification_id, status, at, error))
