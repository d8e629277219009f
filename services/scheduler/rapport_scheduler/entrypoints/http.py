"""Scheduler's HTTP API."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Request

from rapport_shared.http.auth import Role, require
from rapport_shared.http.errors import NotFound

router = APIRouter(prefix="/v1/courses", tags=["courses"])
reader = require(Role.clinician, Role.admin)


@router.get("/by-episode/{episode_id}", summary="A course and its sessions", dependencies=[Depends(reader)])
async def course_by_episode(episode_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        course = await conn.fetchrow("SELECT * FROM courses WHERE episode_id = $1", episode_id)
        if course is None:
            raise NotFound(f"no course for episode {episode_id}", field="episode_id")
        sessions = await conn.fetch("SELECT * FROM sessions WHERE course_id = $1 ORDER BY number", course["course_id"])
    return {
        "course_id": str(course["course_id"]), "episode_id": str(episode_id), "template_id": course["template_id"],
        "clinician_id": course["clinician_id"], "contracted_sessions": course["contracted_sessions"], "phase": course["phase"],
        "sessions": [{"number": s["number"], "starts_at": s["starts_at"].isoformat(), "status": s["status"]} for s in sessions],
    }
