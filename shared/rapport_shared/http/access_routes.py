"""Routes every service has for access: its access audit (read-only, with a cursor) and the
care team of the caller's organisation (supervisors, on-call windows). Admin of that organisation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from .. import pseudonyms
from ..contracts.base import PseudonymousId
from ..inputs import Timestamp
from .access import AccessConfig, Duty, Grant, audit_query_sql, audit_row, current_grant
from .errors import Invalid

router = APIRouter(prefix="/v1", tags=["access"])

# A ``seq`` is a Postgres bigint: a larger ``after_seq`` is refused (422), not sent to the database.
MAX_SEQ = 2**63 - 1


class AuditEntry(BaseModel):
    seq: int
    at: str
    actor: str | None
    actor_roles: list[str]
    actor_org: str | None
    method: str
    route: str
    record_param: str | None
    record_id: str | None
    record_org: str | None
    decision: Literal["allowed", "refused", "not_found"]
    status: int


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page; null on the last page")


@router.get("/access-audit", response_model=AuditPage,
            summary="Who read or tried to act on which record here, when, through which route, allowed or refused")
async def access_audit(request: Request, grant: Grant = Depends(current_grant), after_seq: int = Query(0, ge=0, le=MAX_SEQ),
                       limit: int = Query(100, ge=1, le=1000), record_id: str | None = Query(None, max_length=64),
                       actor: str | None = Query(None, max_length=64),
                       decision: Literal["allowed", "refused", "not_found"] | None = None) -> AuditPage:
    cfg: AccessConfig = request.app.state.access
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(audit_query_sql(cfg.audit_table), after_seq, grant.principal.org, record_id, actor,
                                decision, limit)
    entries = [audit_row(r) for r in rows]
    return AuditPage(entries=entries, next_after_seq=entries[-1]["seq"] if len(entries) == limit else None)


class CareTeamEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clinician_id: PseudonymousId
    duty: Duty
    starts_at: Timestamp | None = Field(default=None, description="on-call window start (UTC offset required)")
    ends_at: Timestamp | None = Field(default=None, description="on-call window end, after starts_at")


class CareTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[CareTeamEntry] = Field(max_length=2000)


@router.get("/care-team", response_model=CareTeam, summary="The caller's organisation's care team in this service")
async def get_care_team(request: Request, grant: Grant = Depends(current_grant)) -> CareTeam:
    cfg: AccessConfig = request.app.state.access
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT clinician_id, duty, starts_at, ends_at FROM {cfg.care_team_table}"
                                " WHERE organisation_id = $1 ORDER BY clinician_id, duty, starts_at", grant.principal.org)
    return CareTeam(entries=[CareTeamEntry(**dict(r)) for r in rows])


@router.put("/care-team", response_model=CareTeam, summary="Replace the caller's organisation's care team in this service")
async def put_care_team(body: CareTeam, request: Request, grant: Grant = Depends(current_grant)) -> CareTeam:
    if not grant.principal.org:
        raise Invalid("the token names no organisation (claim org)", field="org")
    for i, e in enumerate(body.entries):
        # A new member is a new id entering Rapport: the strict format (pseudonyms.problem). The
        # model itself accepts any recorded id, so reading a care team set before never fails.
        reason = pseudonyms.problem(e.clinician_id)
        if reason is not None:
            raise Invalid(f"{reason}; a pseudonymous id is {pseudonyms.RULE}", field=f"entries.{i}.clinician_id")
        for name in ("starts_at", "ends_at"):
            t = getattr(e, name)
            if t is not None and t.tzinfo is None:
                raise Invalid("must carry a UTC offset", field=f"entries.{i}.{name}")
        if e.starts_at and e.ends_at and e.ends_at <= e.starts_at:
            raise Invalid("must be after starts_at", field=f"entries.{i}.ends_at")
    cfg: AccessConfig = request.app.state.access
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"DELETE FROM {cfg.care_team_table} WHERE organisation_id = $1", grant.principal.org)
        await conn.executemany(
            f"INSERT INTO {cfg.care_team_table} (organisation_id, clinician_id, duty, starts_at, ends_at, set_by, set_at)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7)",
            [(grant.principal.org, e.clinician_id, e.duty.value, e.starts_at, e.ends_at, grant.principal.sub,
              rt.clock.now()) for e in body.entries])
    return body
