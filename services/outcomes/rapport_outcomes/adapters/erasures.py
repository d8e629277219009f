"""Erasure of a person in outcomes (docs/privacy.md): reads ``rapport.erasures`` (intake's
notices: pseudonymous person id, organisation code, time; nothing else) and erases the free text
outcomes holds about that person — ``alerts.action_text`` of the alerts of the person's episodes
in that organisation (``organisation_id`` None: every organisation), and its copy in the
resolution's ``alert_audit`` row — keeping every coded fact (the ``action`` code included).

Why a notice topic rather than reading the key tombstones of ``rapport.private.person-keys`` or an
admin route: outcomes never needs to see (wrapped) key material, so it gets no right on any
``rapport.private.*`` topic; tombstones disappear after ``delete.retention.ms`` while notices are
kept, so an outcomes that was down for weeks still erases when it comes back; a notice names the
organisation, so the erasure is scoped like intake's; and nobody has to remember a second call.

Plain aiokafka, group ``<group>-erasures``, offsets committed after the write (re-applying a
notice is harmless). A text resolved *after* the erasure is kept (like contact details recorded
again at intake)."""

from __future__ import annotations

from datetime import datetime

from rapport_shared.logging import get_logger
from rapport_shared.private_contacts import ContactRecordError, ErasureNotice, decode_erasure
from rapport_shared.topic_reader import run_topic_reader
from rapport_shared.topics import ERASURES

log = get_logger("rapport.outcomes.erasures")


async def apply_erasure(conn, notice: ErasureNotice, now: datetime, default_organisation: str | None = None) -> int:
    """Erase the person's free text (in the notice's organisation). Returns the alerts changed."""
    alert_ids = [r["alert_id"] for r in await conn.fetch(
        "SELECT a.alert_id FROM alerts a JOIN episodes e USING (episode_id)"
        " WHERE e.person_id = $1 AND ($2::text IS NULL OR COALESCE(e.organisation_id, $3) = $2)"
        " AND a.action_text IS NOT NULL FOR UPDATE OF a",
        notice.person_id, notice.organisation_id, default_organisation)]
    if alert_ids:
        await conn.execute("UPDATE alerts SET action_text = NULL WHERE alert_id = ANY($1::uuid[])", alert_ids)
        await conn.execute(
            "UPDATE alert_audit SET details = jsonb_set(details, '{action_text}', 'null'::jsonb)"
            " WHERE alert_id = ANY($1::uuid[]) AND details ? 'action_text'"
            " AND details->'action_text' <> 'null'::jsonb", alert_ids)
    await conn.execute("INSERT INTO erasures (person_id, organisation_id, erased_at, applied_at, alerts)"
                       " VALUES ($1,$2,$3,$4,$5)", notice.person_id, notice.organisation_id, notice.erased_at, now,
                       len(alert_ids))
    return len(alert_ids)


async def apply_record(conn, key: bytes | None, value: bytes | None, headers, now: datetime,
                       default_organisation: str | None = None) -> int | None:
    try:
        notice = decode_erasure(key, value, headers)
    except ContactRecordError as exc:
        log.error("unreadable erasure notice skipped", error=str(exc))
        return None
    n = await apply_erasure(conn, notice, now, default_organisation)
    log.info("erasure applied", alerts=n)
    return n


async def run_erasure_reader(runtime) -> None:
    """Background job of the outcomes runtime (the shared private-topic reader). The topic is
    intake's (created by its relay, or by ``rapport acls apply``): until it exists, wait."""
    s = runtime.settings
    default_organisation = getattr(s, "default_organisation", "") or None

    async def apply(conn, records) -> None:
        for r in records:
            await apply_record(conn, r.key, r.value, r.headers, runtime.clock.now(), default_organisation)

    await run_topic_reader(runtime, name="erasure reader", topics=[ERASURES], group=f"{s.consumer_group}-erasures",
                           apply=apply)
