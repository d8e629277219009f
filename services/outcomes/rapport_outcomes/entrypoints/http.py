"""Outcomes' HTTP API."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Request

from rapport_shared.http.auth import Role, require
from rapport_shared.http.errors import NotFound

router = APIRouter(prefix="/v1/episodes", tags=["scores"])
reader = require(Role.clinician, Role.admin)


@router.get("/{episode_id}/scores", summary="An episode's score history", dependencies=[Depends(reader)])
async def scores(episode_id: UUID, request: Request) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM episodes WHERE episode_id = $1", episode_id):
            raise NotFound(f"no episode {episode_id}", field="episode_id")
        rows = await conn.fetch("SELECT * FROM submissions WHERE episode_id = $1 ORDER BY administered_at", episode_id)
    return {"episode_id": str(episode_id), "scores": [
        {"instrument": r["instrument"], "timepoint": r["timepoint"], "total": float(r["total"]), "band": r["band"],
         "caseness": r["caseness"], "flags": list(r["flags"]), "administered_at": r["administered_at"].isoformat()}
        for r in rows]}
