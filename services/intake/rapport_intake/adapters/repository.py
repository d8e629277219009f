"""Intake's SQL: load and save referrals in the intake schema."""

from __future__ import annotations

import json
from uuid import UUID

import asyncpg

from rapport_shared.contracts import Availability, BaselineScore, Focus, TargetCondition

from ..domain.model import Referral


async def add(conn: asyncpg.Connection, r: Referral, created_by: str) -> None:
    await conn.execute(
        "INSERT INTO referrals (episode_id, person_id, referral_source, target_condition, created_by, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        r.episode_id, r.person_id, r.referral_source, r.target_condition.value, created_by, r.created_at,
    )


async def get(conn: asyncpg.Connection, episode_id: UUID, *, for_update: bool = False) -> Referral | None:
    row = await conn.fetchrow(
        "SELECT * FROM referrals WHERE episode_id = $1" + (" FOR UPDATE" if for_update else ""), episode_id
    )
    if row is None:
        return None
    scores = await conn.fetch("SELECT * FROM baseline_scores WHERE episode_id = $1", episode_id)
    return Referral(
        episode_id=row["episode_id"],
        person_id=row["person_id"],
        referral_source=row["referral_source"],
        target_condition=TargetCondition(row["target_condition"]),
        created_at=row["created_at"],
        status=row["status"],
        template_id=row["template_id"],
        clinician_id=row["clinician_id"],
        focus=Focus.model_validate_json(row["focus"]) if row["focus"] else None,
        availability=Availability.model_validate_json(row["availability"]) if row["availability"] else None,
        baseline={
            s["instrument"]: BaselineScore(
                instrument=s["instrument"], answers={int(k): v for k, v in json.loads(s["answers"]).items()}, total=float(s["total"]), band=s["band"],
                caseness=s["caseness"], flags=list(s["flags"]), administered_at=s["administered_at"],
            )
            for s in scores
        },
        completed_at=row["completed_at"],
        completed_event_id=row["completed_event_id"],
    )


async def save(conn: asyncpg.Connection, r: Referral) -> None:
    await conn.execute(
        "UPDATE referrals SET status=$2, template_id=$3, clinician_id=$4, focus=$5::jsonb, availability=$6::jsonb,"
        " completed_at=$7, completed_event_id=$8 WHERE episode_id=$1",
        r.episode_id, r.status, r.template_id, r.clinician_id,
        r.focus.model_dump_json() if r.focus else None,
        r.availability.model_dump_json() if r.availability else None,
        r.completed_at, r.completed_event_id,
    )
    for s in r.baseline.values():
        await conn.execute(
            "INSERT INTO baseline_scores (episode_id, instrument, answers, total, band, caseness, flags, administered_at)"
            " VALUES ($1,$2,$3::jsonb,$4,$5,$6,$7,$8) ON CONFLICT (episode_id, instrument) DO UPDATE SET"
            " answers=EXCLUDED.answers, total=EXCLUDED.total, band=EXCLUDED.band, caseness=EXCLUDED.caseness,"
            " flags=EXCLUDED.flags, administered_at=EXCLUDED.administered_at",
            r.episode_id, s.instrument, json.dumps(s.answers), s.total, s.band, s.caseness, s.flags, s.administered_at,
        )
