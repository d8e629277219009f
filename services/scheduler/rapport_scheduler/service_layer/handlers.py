"""Scheduler's use cases."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rapport_shared.consumer import PoisonEvent
from rapport_shared.contracts import CoursePlannedV1, IntakeCompletedV1, Phase, PlannedSession
from rapport_shared.uow import UnitOfWork

from ..domain import model


async def plan_course(intake: IntakeCompletedV1, uow: UnitOfWork, *, session_minutes: int, lead_days: int) -> None:
    """Create the course and its weekly sessions from the template; announce it."""
    if await uow.conn.fetchval("SELECT 1 FROM courses WHERE episode_id = $1", intake.episode_id):
        return  # a course exists for this episode (a re-sent intake under a new id): plan once
    try:
        t = model.template(intake.template_id)
        starts = model.weekly_starts(
            intake.availability, intake.completed_at + timedelta(days=lead_days), t.sessions, session_minutes, t.cadence_days
        )
    except (model.UnknownTemplate, model.NoBookableSlot) as exc:
        raise PoisonEvent(f"cannot plan a course: {exc!r}") from exc
    course_id = uuid.uuid4()
    sessions = [
        PlannedSession(session_id=uuid.uuid4(), number=i + 1, starts_at=s, duration_minutes=session_minutes)
        for i, s in enumerate(starts)
    ]
    await uow.conn.execute(
        "INSERT INTO courses (course_id, episode_id, person_id, template_id, clinician_id, contracted_sessions, phase, planned_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
        course_id, intake.episode_id, intake.person_id, t.id, intake.clinician_id, t.sessions, Phase.initial.value, uow.now(),
    )
    await uow.conn.executemany(
        "INSERT INTO sessions (session_id, course_id, number, starts_at, duration_minutes) VALUES ($1,$2,$3,$4,$5)",
        [(s.session_id, course_id, s.number, s.starts_at, s.duration_minutes) for s in sessions],
    )
    await uow.emit(
        CoursePlannedV1(
            episode_id=intake.episode_id, course_id=course_id, person_id=intake.person_id, template_id=t.id,
            clinician_id=intake.clinician_id, contracted_sessions=t.sessions, phase_plan=model.phase_plan(t, t.sessions),
            sessions=sessions, first_session_at=starts[0],
            planned_end_at=starts[-1] + timedelta(minutes=session_minutes), planned_at=uow.now(),
        )
    )
