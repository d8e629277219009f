"""Who may see what in the scheduler (architecture.md; the policy is ``access.yaml``).

The resolvers turn a path parameter into the record's scope for the shared ``enforce`` dependency
(rapport_shared.http.access): a course, by its id or its episode's id, belongs to its episode's
organisation and is assigned to its treating clinician; a clinician's working hours are the
clinician's own. A malformed id resolves like a missing one (the same 404).
"""

from __future__ import annotations

from uuid import UUID

from rapport_shared.http.access import RecordScope, Resolver

from .adapters.repository import CourseRepository


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def resolvers(default_organisation: str | None = None) -> dict[str, Resolver]:
    """``default_organisation``: the organisation of a course that records none (planned before
    migration 0004, from an intake event without the field): the same rule as for such an event."""

    def scope(row) -> RecordScope | None:
        if row is None:
            return None
        return RecordScope(organisation_id=row["organisation_id"] or default_organisation,
                           person_id=row["person_id"], assigned=frozenset({row["clinician_id"]}))

    async def course(conn, value: str) -> RecordScope | None:
        cid = _uuid(value)
        return None if cid is None else scope(await CourseRepository(conn).access_scope(course_id=cid))

    async def episode(conn, value: str) -> RecordScope | None:
        eid = _uuid(value)
        return None if eid is None else scope(await CourseRepository(conn).access_scope(episode_id=eid))

    async def clinician(conn, value: str) -> RecordScope | None:
        # A clinician's working hours: the clinician's own (relation own_person: token sub = id).
        # Every clinician has hours (the default when none are set), so none is "missing".
        return RecordScope(organisation_id=None, person_id=value)

    return {"course_id": course, "episode_id": episode, "clinician_id": clinician}
