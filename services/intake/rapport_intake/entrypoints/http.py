"""Intake's HTTP API (thin: validate, call a handler in a unit of work, shape the answer)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Request

from rapport_shared.http.auth import Principal, Role, require

from ..domain import commands
from ..service_layer import handlers

router = APIRouter(prefix="/v1/referrals", tags=["referrals"])
writer = require(Role.intake_clinician, Role.partner, Role.admin)


def _view(r) -> dict:
    return {
        "episode_id": str(r.episode_id),
        "status": r.status,
        "target_condition": r.target_condition.value,
        "completed_event_id": str(r.completed_event_id) if r.completed_event_id else None,
        "missing": r.missing_for_completion() if r.status == "open" else [],
    }


@router.post("", status_code=201, summary="Open a referral (starts an episode)")
async def open_referral(cmd: commands.OpenReferral, request: Request, who: Principal = Depends(writer)) -> dict:
    async with request.app.state.runtime.uow() as uow:
        referral = await handlers.open_referral(cmd, uow, actor=who.sub)
    return _view(referral)


@router.post("/{episode_id}/complete", summary="Record the remaining intake facts and complete the intake")
async def complete(episode_id: UUID, cmd: commands.CompleteIntake, request: Request, who: Principal = Depends(writer)) -> dict:
    async with request.app.state.runtime.uow() as uow:
        referral = await handlers.complete_intake(cmd, uow, episode_id)
    return _view(referral)
