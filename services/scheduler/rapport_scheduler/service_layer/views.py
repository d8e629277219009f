"""What the scheduler's HTTP reads answer (read-only, through the unit of work's repositories),
and the course as every answer shows it."""

from __future__ import annotations

from uuid import UUID

from ..domain.course import Course, Session
from ..domain.errors import UnknownEntity
from .unit_of_work import SchedulerUnitOfWork


def session_view(c: Course, s: Session) -> dict:
    return {
        "session_id": str(s.session_id), "number": s.number, "starts_at": s.starts_at.isoformat(),
        "ends_at": s.ends_at.isoformat(), "duration_minutes": s.duration_minutes, "kind": s.kind.value,
        "status": s.status.value, "phase": c.phase_of(s.number).value,
        "recorded_at": s.recorded_at.isoformat() if s.recorded_at else None,
        "cancelled_by": s.cancelled_by.value if s.cancelled_by else None, "reason_code": s.reason_code,
        "optional_parent_session": s.session_id in c.extra_sessions,
    }


def course_view(c: Course) -> dict:
    live = c.live_sessions()
    current = c.current_session()
    return {
        "course_id": str(c.course_id), "episode_id": str(c.episode_id), "template_id": c.template_id,
        "clinician_id": c.clinician_id, "phase": c.phase.value, "contracted_sessions": c.contracted,
        "maintenance_sessions": c.maintenance_contracted, "attended_sessions": c.attended,
        "consecutive_missed": c.consecutive_missed,
        "focus": c.focus.model_dump(mode="json") if c.focus else None,
        "checklist": {i.value: {"session_number": e.session_number, "recorded_at": e.recorded_at.isoformat(),
                                "diagnosis_code": e.diagnosis_code,
                                "focus": e.focus.model_dump(mode="json") if e.focus else None,
                                "focus_changed": e.focus_changed, "reason_code": e.reason_code}
                      for i, e in c.checklist.items()},
        "checklist_complete": c.checklist_complete, "missing_items": [i.value for i in c.missing_items()],
        "phase_history": [{"phase": e.phase.value, "from_session": e.from_session,
                           "reason": e.reason.value if e.reason else None, "at": e.at.isoformat()} for e in c.phase_history],
        "review_notices": sorted(c.notices), "remission": c.remission,
        "ended": {"reason": c.ended_reason.value, "at": c.ended_at.isoformat()} if c.ended_reason else None,
        "current_session": session_view(c, current) if current else None,
        "planned_end_at": live[-1].ends_at.isoformat() if live else None,
        "sessions": [session_view(c, s) for s in c.ordered_sessions()],
        # Beside the contract (IPT-A's mid-phase parent session): not in ``sessions``, whose
        # numbers are the contract's positions.
        "optional_parent_sessions": [session_view(c, s) for s in c.ordered_extras()],
    }


async def course(uow: SchedulerUnitOfWork, course_id: UUID) -> dict:
    c = await uow.courses.get(course_id)
    if c is None:
        raise UnknownEntity(f"no course {course_id}", field="course_id")
    return course_view(c)


async def course_by_episode(uow: SchedulerUnitOfWork, episode_id: UUID) -> dict:
    c = await uow.courses.get_by_episode(episode_id)
    if c is None:
        raise UnknownEntity(f"no episode {episode_id}", field="episode_id")  # the body the access policy answers
    return course_view(c)


async def checklist(uow: SchedulerUnitOfWork, course_id: UUID) -> dict:
    view = await course(uow, course_id)
    return {k: view[k] for k in ("course_id", "phase", "checklist", "checklist_complete", "missing_items", "focus")}


async def timers(uow: SchedulerUnitOfWork, course_id: UUID) -> dict:
    pending = await uow.timers.pending(course_id)
    return {"timers": [{"kind": t.kind, "due_at": t.due_at.isoformat(), "attempts": t.attempts,
                        "parked_at": t.parked_at.isoformat() if t.parked_at else None} for t in pending]}


async def working_hours(uow: SchedulerUnitOfWork, clinician_id: str) -> dict:
    hours = await uow.calendar.clinician_hours(clinician_id)
    default = hours is None
    hours = hours or uow.settings.default_hours()
    return {"clinician_id": clinician_id, "timezone": hours.timezone, "slots": hours.to_weekday_slots(), "default": default}


async def closures(uow: SchedulerUnitOfWork) -> dict:
    days = await uow.calendar.closures()
    return {"timezone": uow.settings.clinic_timezone,
            "closures": [{"day": d.isoformat(), "reason_code": r} for d, r in days.items()]}
