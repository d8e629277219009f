"""What the notifier knows about a record for access decisions (rapport_shared.http.access):
the record's organisation, person and assigned clinicians — never contact data.

An episode's organisation is ``episodes.organisation_id`` (from ``IntakeCompletedV1``), else the
service's ``default_organisation`` (events of older producers, rows from before the column), else
none: a record of no organisation is reached by no organisation's callers.
"""

from __future__ import annotations

import uuid

from rapport_shared.http.access import RecordScope, Resolver


def default_org(settings) -> str | None:
    return settings.default_organisation or None


async def alert_scope(conn, alert_id: str, default: str | None) -> RecordScope | None:
    """An alert: its episode's organisation; assigned = the alert's clinician, the episode's
    treating clinician, and the clinicians of that organisation's on-call rota who were paged about
    this very alert (``oncall:<id>`` deliveries): whoever was asked to act may acknowledge."""
    try:
        aid = uuid.UUID(alert_id)
    except ValueError:
        return None
    row = await conn.fetchrow(
        "SELECT a.clinician_id AS alert_clinician, e.clinician_id AS episode_clinician, e.person_id,"
        " COALESCE(e.organisation_id, $2::text) AS organisation_id"
        " FROM alerts a LEFT JOIN episodes e USING (episode_id) WHERE a.alert_id = $1", aid, default)
    if row is None:
        return None
    paged = await conn.fetch(
        "SELECT DISTINCT substr(recipient_ref, 8) AS clinician_id FROM notifications"
        " WHERE alert_id = $1 AND recipient_ref LIKE 'oncall:%'", aid)
    assigned = {row["alert_clinician"], row["episode_clinician"], *(r["clinician_id"] for r in paged)}
    return RecordScope(organisation_id=row["organisation_id"], person_id=row["person_id"],
                       assigned=frozenset(c for c in assigned if c))


async def person_scope(conn, person_id: str, default: str | None) -> RecordScope | None:
    """A person: the organisation of their episodes here (the person-level contact data and
    preferences the notifier holds belong to whoever referred them). Unknown person: None.
    A person referred by two organisations resolves to the one of their latest-known episode
    (the core's scope holds one organisation; see docs/access.md)."""
    rows = await conn.fetch(
        "SELECT COALESCE(organisation_id, $2::text) AS organisation_id, clinician_id FROM episodes"
        " WHERE person_id = $1 ORDER BY ended_at NULLS FIRST, episode_id", person_id, default)
    if not rows:
        return None
    return RecordScope(organisation_id=rows[0]["organisation_id"], person_id=person_id,
                       assigned=frozenset(r["clinician_id"] for r in rows if r["clinician_id"]))


def resolvers(settings) -> dict[str, Resolver]:
    default = default_org(settings)

    async def alert(conn, value: str) -> RecordScope | None:
        return await alert_scope(conn, value, default)

    async def person(conn, value: str) -> RecordScope | None:
        return await person_scope(conn, value, default)

    return {"alert_id": alert, "person_id": person}
