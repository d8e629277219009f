"""Outcomes' use cases."""

from __future__ import annotations

import json
import uuid

from rapport_shared.contracts import IntakeCompletedV1, ScoreSubmittedV1, Timepoint
from rapport_shared.instruments import load_catalogue, score
from rapport_shared.uow import UnitOfWork


async def record_baseline(intake: IntakeCompletedV1, uow: UnitOfWork, cause_id: str) -> None:
    """Open the episode's measurement record with its baseline scores (rescored here: the
    catalogue in this service is the authority on scoring)."""
    await uow.conn.execute(
        "INSERT INTO episodes (episode_id, person_id, clinician_id, template_id, began_at) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (episode_id) DO NOTHING",
        intake.episode_id, intake.person_id, intake.clinician_id, intake.template_id, intake.referred_at,
    )
    for b in intake.baseline_scores:
        result = score(b.instrument, b.answers)
        # Deterministic id: the same intake event always yields the same submission id.
        submission_id = uuid.uuid5(uuid.UUID(cause_id), b.instrument)
        await uow.conn.execute(
            "INSERT INTO submissions (submission_id, episode_id, instrument, timepoint, answers, total, band, caseness,"
            " flags, administered_at, scored_at) VALUES ($1,$2,$3,'baseline',$4::jsonb,$5,$6,$7,$8,$9,$10)",
            submission_id, intake.episode_id, b.instrument, json.dumps(b.answers), float(result.total), result.band,
            result.caseness, list(result.flags), b.administered_at, uow.now(),
        )
        await uow.emit(
            ScoreSubmittedV1(
                episode_id=intake.episode_id, submission_id=submission_id, instrument=b.instrument,
                loinc_code=load_catalogue().get(b.instrument).loinc_total, timepoint=Timepoint.baseline,
                total=float(result.total), band=result.band, caseness=result.caseness, flags=list(result.flags),
                administered_at=b.administered_at, scored_at=uow.now(),
            )
        )
