"""Notifier's HTTP API."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Depends, Request

from rapport_shared.http.auth import Role, require

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])
auditor = require(Role.admin, Role.clinician)


@router.get("", summary="Delivery log (by reference; no contact details)", dependencies=[Depends(auditor)])
async def deliveries(request: Request, episode_id: UUID | None = None) -> dict:
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM deliveries WHERE ($1::uuid IS NULL OR episode_id = $1) ORDER BY delivered_at", episode_id
        )
    return {"deliveries": [
        {"notification_id": str(r["notification_id"]), "episode_id": str(r["episode_id"]), "kind": r["kind"],
         "recipient_ref": r["recipient_ref"], "channel": r["channel"], "status": r["status"],
         "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None}
        for r in rows]}
