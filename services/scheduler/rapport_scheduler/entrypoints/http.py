"""Scheduler's HTTP API (thin: validate, run a use case in one unit of work, shape the answer).

Who may call what is the access policy (``access.yaml``, enforced app-wide before any handler
runs): a course is read and operated by its assigned clinician or the organisation's care team,
read by its organisation's admin; clinicians' working hours and clinic closure days are written by
``admin``. A course outside the caller's relations answers like a missing one (404, same body).
Refusals: 404 unknown course/session,
422 bad input naming the field, 409 an operation the course's phase or the calendar does not
allow (naming the current phase and the rule). A refused request writes nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Request

from rapport_shared.contracts.course import ChecklistItem, PhaseChangeReason
from rapport_shared.http.access import Grant, current_grant
from rapport_shared.http.auth import Principal
from rapport_shared.http.errors import Conflict, Invalid, NotFound
from rapport_shared.logging import get_logger
from rapport_shared.uow import run_retrying

from ..adapters import repository as repo
from ..domain import commands
from ..domain import decider as D
from ..domain.calendar import WeeklyHours
from ..domain.course import Course
from ..domain.errors import InvalidInput, RuleViolation, SlotTaken, UnknownEntity
from ..service_layer import handlers

log = get_logger(__name__)

router = APIRouter(prefix="/v1/courses", tags=["courses"])
admin_router = APIRouter(tags=["calendar configuration"])
clock_router = APIRouter(tags=["time"])


@contextmanager
def refusals():
    """Domain refusals → HTTP answers (raised after the unit of work rolled back)."""
    try:
        yield
    except UnknownEntity as e:
        raise NotFound(e.message, field=e.field) from None
    except InvalidInput as e:
        raise Invalid(e.message, field=e.field) from None
    except SlotTaken as e:
        raise Conflict(e.message, field=e.field, code="slot_taken") from None
    except RuleViolation as e:
        raise Conflict(e.message, field=e.field, code="illegal_transition", phase=e.phase, rule=e.rule) from None


def session_view(c: Course, s) -> dict:
    return {
        "session_id": str(s.session_id), "number": s.number, "starts_at": s.starts_at.isoformat(),
        "ends_at": s.ends_at.isoformat(), "duration_minutes": s.duration_minutes, "kind": s.kind.value,
        "status": s.status.value, "phase": c.phase_of(s.number).value,
        "recorded_at": s.recorded_at.isoformat() if s.recorded_at else None,
        "cancelled_by": s.cancelled_by.value if s.cancelled_by else None, "reason_code": s.reason_code,
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
    }


async def _run(request: Request, who: Principal, course_id: UUID, action: str, decide, *, books: bool = True) -> dict:
    rt = request.app.state.runtime
    with refusals():
        d = await run_retrying(rt.uow, lambda uow: handlers.run(uow, request.app.state.scheduler, course_id, decide,
                                                                books=books))
    log.info("course command", action=action, course_id=str(course_id), by=who.sub, events=[e.event_type for e in d.events])
    return {"course": course_view(d.course), "events": [e.event_type for e in d.events]}


@router.get("/by-episode/{episode_id}", summary="A course and its sessions, by episode")
async def course_by_episode(episode_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        course = await repo.get_by_episode(conn, episode_id)
    if course is None:
        raise NotFound(f"no episode {episode_id}", field="episode_id")  # the body the access policy answers
    return course_view(course)


@router.get("/{course_id}", summary="A course: phase, checklist, calendar")
async def get_course(course_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        course = await repo.get(conn, course_id)
    if course is None:
        raise NotFound(f"no course {course_id}", field="course_id")
    return course_view(course)


@router.post("/{course_id}/sessions/{session_id}/attend", summary="Record a session attended")
async def attend(course_id: UUID, session_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "attend", lambda c, ctx: D.attend(c, session_id, ctx), books=False)


@router.post("/{course_id}/sessions/{session_id}/miss", summary="Record a session missed (the calendar moves)")
async def miss(course_id: UUID, session_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "miss", lambda c, ctx: D.miss(c, session_id, ctx))


@router.post("/{course_id}/sessions/{session_id}/reschedule", summary="Move a scheduled session")
async def reschedule(course_id: UUID, session_id: UUID, cmd: commands.RescheduleSession, request: Request,
                     grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "reschedule",
                      lambda c, ctx: D.reschedule(c, session_id, cmd.starts_at, cmd.reason_code, ctx))


@router.post("/{course_id}/sessions/{session_id}/cancel", summary="Cancel a session (by patient or clinic; the calendar moves)")
async def cancel(course_id: UUID, session_id: UUID, cmd: commands.CancelSession, request: Request,
                 grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "cancel",
                      lambda c, ctx: D.cancel(c, session_id, cmd.cancelled_by, cmd.reason_code, ctx))


@router.post("/{course_id}/contract", summary="A new contract: session count within the template's bounds")
async def change_contract(course_id: UUID, cmd: commands.ChangeContract, request: Request,
                          grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "contract",
                      lambda c, ctx: D.change_contract(c, cmd.contracted_sessions, cmd.reason_code, ctx))


@router.post("/{course_id}/withdraw", summary="End the course early: withdrawal or referral on")
async def withdraw(course_id: UUID, request: Request, cmd: commands.Withdraw = Body(default=commands.Withdraw()),
                   grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "withdraw",
                      lambda c, ctx: D.withdraw(c, PhaseChangeReason(cmd.reason), ctx), books=False)


@router.get("/{course_id}/checklist", summary="The initial-phase checklist")
async def checklist(course_id: UUID, request: Request) -> dict:
    view = await get_course(course_id, request)
    return {k: view[k] for k in ("course_id", "phase", "checklist", "checklist_complete", "missing_items", "focus")}


@router.put("/{course_id}/checklist/{item}", summary="Record an initial-phase checklist item")
async def record_checklist(course_id: UUID, item: ChecklistItem, request: Request,
                           cmd: commands.RecordChecklistItem = Body(default=commands.RecordChecklistItem()),
                           grant: Grant = Depends(current_grant)) -> dict:
    decide = lambda c, ctx: D.record_checklist(c, item, ctx, diagnosis_code=cmd.diagnosis_code, focus=cmd.focus,
                                               reason_code=cmd.reason_code)
    return await _run(request, grant.principal, course_id, f"checklist:{item.value}", decide, books=False)


@router.post("/{course_id}/maintenance", summary="Start maintenance (IPT-M) under a new contract: remission required")
async def start_maintenance(course_id: UUID, cmd: commands.StartMaintenance, request: Request,
                            grant: Grant = Depends(current_grant)) -> dict:
    return await _run(request, grant.principal, course_id, "maintenance",
                      lambda c, ctx: D.start_maintenance(c, cmd.sessions, cmd.reason_code, ctx))


@router.get("/{course_id}/timers", summary="The course's pending durable timers (parked ones with parked_at)")
async def timers(course_id: UUID, request: Request) -> dict:
    deps = request.app.state.scheduler
    async with request.app.state.runtime.pool.acquire() as conn:
        pending = await deps.timers.pending(conn, handlers.timer_key(course_id))
    return {"timers": [{"kind": t.kind, "due_at": t.due_at.isoformat(), "attempts": t.attempts,
                        "parked_at": t.parked_at.isoformat() if t.parked_at else None} for t in pending]}


# -- calendar configuration --------------------------------------------------------------------

@admin_router.put("/v1/clinicians/{clinician_id}/working-hours", summary="Set a clinician's weekly working hours")
async def set_working_hours(clinician_id: str, cmd: commands.WorkingHours, request: Request,
                            grant: Grant = Depends(current_grant)) -> dict:
    rt = request.app.state.runtime
    hours = WeeklyHours.from_slots(cmd.timezone, cmd.slots)
    async with rt.uow() as uow:
        await repo.set_clinician_hours(uow.conn, clinician_id, hours, by=grant.principal.sub, now=uow.now())
    return {"clinician_id": clinician_id, "timezone": hours.timezone, "slots": hours.to_slots()}


@admin_router.get("/v1/clinicians/{clinician_id}/working-hours", summary="A clinician's working hours")
async def get_working_hours(clinician_id: str, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        hours = await repo.clinician_hours(conn, clinician_id)
    default = hours is None
    hours = hours or request.app.state.scheduler.default_hours
    return {"clinician_id": clinician_id, "timezone": hours.timezone, "slots": hours.to_slots(), "default": default}


@admin_router.get("/v1/closures", summary="Clinic closure days (no session is booked on them)")
async def list_closures(request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        days = await repo.closures(conn)
    return {"timezone": request.app.state.scheduler.clinic_timezone,
            "closures": [{"day": d.isoformat(), "reason_code": r} for d, r in days.items()]}


@admin_router.put("/v1/closures/{day}", summary="Close the clinic on a day (applies to bookings from now on)")
async def add_closure(day: date, request: Request, cmd: commands.ClosureDay = Body(default=commands.ClosureDay()),
                      grant: Grant = Depends(current_grant)) -> dict:
    async with request.app.state.runtime.uow() as uow:
        await repo.add_closure(uow.conn, day, cmd.reason_code, by=grant.principal.sub, now=uow.now())
    return {"day": day.isoformat(), "reason_code": cmd.reason_code}


@admin_router.delete("/v1/closures/{day}", summary="Reopen a closure day")
async def remove_closure(day: date, request: Request) -> dict:
    async with request.app.state.runtime.uow() as uow:
        if not await repo.remove_closure(uow.conn, day):
            raise NotFound(f"{day.isoformat()} is not a closure day", field="day")
    return {"day": day.isoformat(), "removed": True}


@clock_router.get("/v1/clock", summary="The service's current time (simulated in simulation mode)")
async def clock(request: Request) -> dict:
    rt = request.app.state.runtime
    return {"now": rt.clock.now().isoformat(), "mode": request.app.state.clock_mode,
            "ticked": bool(getattr(rt.clock, "ticked", False))}


__all__ = ["admin_router", "clock_router", "router"]
