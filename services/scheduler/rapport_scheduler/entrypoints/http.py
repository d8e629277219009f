"""Scheduler's HTTP API (thin: validate the body, build the command and hand it to the message
bus, which runs its handler in one unit of work; reads go through ``service_layer.views``).

Who may call what is the access policy (``access.yaml``, enforced app-wide before any handler
runs): a course is read and operated by its assigned clinician or the organisation's care team,
read by its organisation's admin; clinicians' working hours and clinic closure days are written by
``admin``. A course outside the caller's relations answers like a missing one (404, same body).
Refusals (``domain.errors``, answered by the shared table in ``rapport_shared.http.errors``): 404
unknown course/session, 422 bad input naming the field, 409 an operation the course's phase or the
calendar does not allow (naming the current phase and the rule). A refused request writes nothing.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Body, Depends, Request

from rapport_shared.contracts.course import ChecklistItem, PhaseChangeReason
from rapport_shared.http.access import Grant, current_grant
from rapport_shared.hours import WorkingHours
from rapport_shared.inputs import Day
from rapport_shared.logging import get_logger

from ..domain import commands
from ..service_layer import views
from . import bodies

log = get_logger(__name__)

router = APIRouter(prefix="/v1/courses", tags=["courses"])
admin_router = APIRouter(tags=["calendar configuration"])
clock_router = APIRouter(tags=["time"])


async def _handle(request: Request, cmd: object):
    """Run a command in its own unit of work (refusals reach the shared error table)."""
    return await request.app.state.runtime.bus.handle(cmd)


async def _course_command(request: Request, action: str, cmd: commands.CourseCommand) -> dict:
    d = await _handle(request, cmd)
    log.info("course command", action=action, course_id=str(cmd.course_id), by=cmd.actor,
             events=[e.event_type for e in d.events])
    return {"course": views.course_view(d.course), "events": [e.event_type for e in d.events]}


async def _read(request: Request, view, *args) -> dict:
    async with request.app.state.runtime.uow() as uow:
        return await view(uow, *args)


@router.get("/by-episode/{episode_id}", summary="A course and its sessions, by episode")
async def course_by_episode(episode_id: UUID, request: Request) -> dict:
    return await _read(request, views.course_by_episode, episode_id)


@router.get("/{course_id}", summary="A course: phase, checklist, calendar")
async def get_course(course_id: UUID, request: Request) -> dict:
    return await _read(request, views.course, course_id)


@router.post("/{course_id}/sessions/{session_id}/attend", summary="Record a session attended")
async def attend(course_id: UUID, session_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "attend", commands.AttendSession(course_id, grant.principal.sub, session_id))


@router.post("/{course_id}/sessions/{session_id}/miss", summary="Record a session missed (the calendar moves)")
async def miss(course_id: UUID, session_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "miss", commands.MissSession(course_id, grant.principal.sub, session_id))


@router.post("/{course_id}/sessions/{session_id}/reschedule", summary="Move a scheduled session")
async def reschedule(course_id: UUID, session_id: UUID, body: bodies.RescheduleSession, request: Request,
                     grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "reschedule", commands.RescheduleSession(
        course_id, grant.principal.sub, session_id, body.starts_at, body.reason_code))


@router.post("/{course_id}/sessions/{session_id}/cancel", summary="Cancel a session (by patient or clinic; the calendar moves)")
async def cancel(course_id: UUID, session_id: UUID, body: bodies.CancelSession, request: Request,
                 grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "cancel", commands.CancelSession(
        course_id, grant.principal.sub, session_id, body.cancelled_by, body.reason_code))


@router.post("/{course_id}/contract", summary="A new contract: session count within the template's bounds")
async def change_contract(course_id: UUID, body: bodies.ChangeContract, request: Request,
                          grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "contract", commands.ChangeContract(
        course_id, grant.principal.sub, body.contracted_sessions, body.reason_code))


@router.post("/{course_id}/withdraw", summary="End the course early: withdrawal or referral on")
async def withdraw(course_id: UUID, request: Request, body: bodies.Withdraw = Body(default=bodies.Withdraw()),
                   grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "withdraw", commands.Withdraw(
        course_id, grant.principal.sub, PhaseChangeReason(body.reason)))


@router.get("/{course_id}/checklist", summary="The initial-phase checklist")
async def checklist(course_id: UUID, request: Request) -> dict:
    return await _read(request, views.checklist, course_id)


@router.put("/{course_id}/checklist/{item}", summary="Record an initial-phase checklist item")
async def record_checklist(course_id: UUID, item: ChecklistItem, request: Request,
                           body: bodies.RecordChecklistItem = Body(default=bodies.RecordChecklistItem()),
                           grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, f"checklist:{item.value}", commands.RecordChecklistItem(
        course_id, grant.principal.sub, item, diagnosis_code=body.diagnosis_code, focus=body.focus,
        reason_code=body.reason_code))


@router.post("/{course_id}/maintenance", summary="Start maintenance (IPT-M) under a new contract: remission required")
async def start_maintenance(course_id: UUID, body: bodies.StartMaintenance, request: Request,
                            grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "maintenance", commands.StartMaintenance(
        course_id, grant.principal.sub, body.sessions, body.reason_code))


@router.post("/{course_id}/parent-sessions",
             summary="IPT-A: add the optional mid-phase parent session (beside the contract)")
async def add_parent_session(course_id: UUID, body: bodies.AddParentSession, request: Request,
                             grant: Grant = Depends(current_grant)) -> dict:
    return await _course_command(request, "parent_session", commands.AddParentSession(
        course_id, grant.principal.sub, body.starts_at))


@router.get("/{course_id}/timers", summary="The course's pending durable timers (parked ones with parked_at)")
async def timers(course_id: UUID, request: Request) -> dict:
    return await _read(request, views.timers, course_id)


# -- calendar configuration --------------------------------------------------------------------

@admin_router.put("/v1/clinicians/{clinician_id}/working-hours", summary="Set a clinician's weekly working hours")
async def set_working_hours(clinician_id: str, body: bodies.WorkingHours, request: Request,
                            grant: Grant = Depends(current_grant)) -> dict:
    hours = await _handle(request, commands.SetWorkingHours(
        clinician_id, WorkingHours.from_weekday_slots(body.timezone, body.slots), grant.principal.sub))
    return {"clinician_id": clinician_id, "timezone": hours.timezone, "slots": hours.to_weekday_slots()}


@admin_router.get("/v1/clinicians/{clinician_id}/working-hours", summary="A clinician's working hours")
async def get_working_hours(clinician_id: str, request: Request) -> dict:
    return await _read(request, views.working_hours, clinician_id)


@admin_router.get("/v1/closures", summary="Clinic closure days (no session is booked on them)")
async def list_closures(request: Request) -> dict:
    return await _read(request, views.closures)


@admin_router.put("/v1/closures/{day}", summary="Close the clinic on a day (applies to bookings from now on)")
async def add_closure(day: Day, request: Request, body: bodies.ClosureDay = Body(default=bodies.ClosureDay()),
                      grant: Grant = Depends(current_grant)) -> dict:
    await _handle(request, commands.AddClosureDay(day, body.reason_code, grant.principal.sub))
    return {"day": day.isoformat(), "reason_code": body.reason_code}


@admin_router.delete("/v1/closures/{day}", summary="Reopen a closure day")
async def remove_closure(day: Day, request: Request) -> dict:
    await _handle(request, commands.RemoveClosureDay(day))
    return {"day": day.isoformat(), "removed": True}


@clock_router.get("/v1/clock", summary="The service's current time (simulated in simulation mode)")
async def clock(request: Request) -> dict:
    rt = request.app.state.runtime
    return {"now": rt.clock.now().isoformat(), "mode": request.app.state.clock_mode,
            "ticked": bool(getattr(rt.clock, "ticked", False))}


__all__ = ["admin_router", "clock_router", "router"]
