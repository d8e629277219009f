"""Intake's SQL for referrals: load and save the aggregate in the intake schema (``uow.referrals``)."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import asyncpg

from rapport_shared.contracts import Availability, BaselineScore, TargetCondition

from ..domain.model import Consent, EligibilityRecord, Inventory, ProvisionalFocus, Referral, RiskReview, Status


def _json(model) -> str | None:
    return model.model_dump_json() if model is not None else None


def _focus(raw: str | None, row) -> ProvisionalFocus | None:
    if not raw:
        return None
    # Rows written by the walking skeleton held only primary/secondary.
    data = {"rationale": None, "recorded_by": row["created_by"], "recorded_at": row["created_at"].isoformat(), **json.loads(raw)}
    return ProvisionalFocus.model_validate(data)


class ReferralRepository:
    """The referral aggregate (with its baseline scores and risk reviews) on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, r: Referral, created_by: str, client_referral_id: str | None = None) -> bool:
        """Insert; False when the caller's ``client_referral_id`` is already taken (a concurrent twin
        waits here for the first to commit, then sees it)."""
        return bool(await self.conn.fetchval(
            "INSERT INTO referrals (episode_id, person_id, referral_source, target_condition, created_by, created_at,"
            " updated_at, client_referral_id, organisation_id, intake_clinician_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)"
            " ON CONFLICT (created_by, client_referral_id) WHERE client_referral_id IS NOT NULL DO NOTHING RETURNING true",
            r.episode_id, r.person_id, r.referral_source, r.target_condition.value, created_by, r.created_at,
            client_referral_id, r.organisation_id, r.intake_clinician_id,
        ))

    async def page(self, *, status: str | None, clinician_id: str | None,
                   after: tuple, limit: int, organisation_id: str | None = None, assigned_to: str | None = None,
                   person_id: str | None = None, default_organisation: str | None = None) -> list[Referral]:
        """Oldest first (a worklist), keyset-paged by (created_at, episode_id); ``after`` is that pair
        from ``rapport_shared.http.paging.parse_cursor``, (None, None) for the first page.
        ``organisation_id`` / ``assigned_to`` / ``person_id`` narrow it to what the caller may see
        (``Grant.list_filter``); rows without an organisation count as ``default_organisation``'s."""
        rows = await self.conn.fetch(
            "SELECT * FROM referrals WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR clinician_id = $2)"
            " AND ($3::timestamptz IS NULL OR (created_at, episode_id) > ($3, $4::uuid))"
            " AND ($6::text IS NULL OR COALESCE(organisation_id, $9) = $6)"
            " AND ($7::text IS NULL OR intake_clinician_id = $7 OR clinician_id = $7)"
            " AND ($8::text IS NULL OR person_id = $8)"
            " ORDER BY created_at, episode_id LIMIT $5",
            status, clinician_id, *after, limit, organisation_id, assigned_to, person_id, default_organisation)
        return [await self._hydrate(row) for row in rows]

    async def scope(self, episode_id: UUID) -> asyncpg.Record | None:
        """What access decisions need of a referral (organisation, person, its clinicians): no personal data."""
        return await self.conn.fetchrow("SELECT organisation_id, person_id, intake_clinician_id, clinician_id"
                                        " FROM referrals WHERE episode_id = $1", episode_id)

    async def person_in_organisation(self, person_id: str, organisation_id: str,
                                     default_organisation: str | None = None) -> bool:
        return bool(await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM referrals WHERE person_id = $1 AND COALESCE(organisation_id, $3) = $2)",
            person_id, organisation_id, default_organisation))

    async def by_client_id(self, created_by: str, client_referral_id: str) -> Referral | None:
        row = await self.conn.fetchrow("SELECT * FROM referrals WHERE created_by = $1 AND client_referral_id = $2",
                                       created_by, client_referral_id)
        return await self._hydrate(row) if row else None

    async def _hydrate(self, row) -> Referral:
        episode_id = row["episode_id"]
        scores = await self.conn.fetch("SELECT * FROM baseline_scores WHERE episode_id = $1 ORDER BY instrument", episode_id)
        reviews = await self.conn.fetch("SELECT * FROM risk_reviews WHERE episode_id = $1 ORDER BY review_id", episode_id)
        return Referral(
            episode_id=episode_id,
            person_id=row["person_id"],
            referral_source=row["referral_source"],
            target_condition=TargetCondition(row["target_condition"]),
            created_at=row["created_at"],
            status=Status(row["status"]),
            consent=Consent.model_validate_json(row["consent"]) if row["consent"] else None,
            baseline={
                s["instrument"]: BaselineScore(
                    instrument=s["instrument"], answers={int(k): v for k, v in json.loads(s["answers"]).items()},
                    total=float(s["total"]), band=s["band"], caseness=s["caseness"], flags=list(s["flags"]),
                    administered_at=s["administered_at"],
                )
                for s in scores
            },
            inventory=Inventory.model_validate_json(row["inventory"]) if row["inventory"] else None,
            focus=_focus(row["focus"], row),
            template_id=row["template_id"],
            clinician_id=row["clinician_id"],
            availability=Availability.model_validate_json(row["availability"]) if row["availability"] else None,
            eligibility=EligibilityRecord.model_validate_json(row["eligibility"]) if row["eligibility"] else None,
            risk_reviews=[
                RiskReview(decision=r["decision"], reviewed_by=r["reviewed_by"], reviewed_at=r["reviewed_at"],
                           note=r["note"], recorded_at=r["recorded_at"])
                for r in reviews
            ],
            completed_at=row["completed_at"],
            completed_event_id=row["completed_event_id"],
            declined_at=row["declined_at"],
            decline_reasons=tuple(row["decline_reasons"] or ()),
            declined_event_id=row["declined_event_id"],
            personal_text_erased_at=row["personal_text_erased_at"],
            organisation_id=row["organisation_id"],
            intake_clinician_id=row["intake_clinician_id"],
        )

    async def get(self, episode_id: UUID, *, for_update: bool = False) -> Referral | None:
        row = await self.conn.fetchrow("SELECT * FROM referrals WHERE episode_id = $1"
                                       + (" FOR UPDATE" if for_update else ""), episode_id)
        return await self._hydrate(row) if row else None

    async def for_person(self, person_id: str, *, for_update: bool = False,
                         organisation_id: str | None = None, default_organisation: str | None = None) -> list[Referral]:
        """The person's referrals (only those of ``organisation_id`` when given)."""
        rows = await self.conn.fetch(
            "SELECT * FROM referrals WHERE person_id = $1 AND ($2::text IS NULL OR COALESCE(organisation_id, $3) = $2)"
            " ORDER BY created_at, episode_id" + (" FOR UPDATE" if for_update else ""),
            person_id, organisation_id, default_organisation,
        )
        return [await self._hydrate(row) for row in rows]

    async def save(self, r: Referral, now: datetime) -> None:
        """The referral's own row (baseline and risk reviews have their own writes)."""
        await self.conn.execute(
            "UPDATE referrals SET status=$2, consent=$3::jsonb, inventory=$4::jsonb, focus=$5::jsonb, template_id=$6,"
            " clinician_id=$7, availability=$8::jsonb, eligibility=$9::jsonb, completed_at=$10, completed_event_id=$11,"
            " declined_at=$12, decline_reasons=$13, declined_event_id=$14, personal_text_erased_at=$15, updated_at=$16"
            " WHERE episode_id=$1",
            r.episode_id, r.status.value, _json(r.consent), _json(r.inventory), _json(r.focus), r.template_id,
            r.clinician_id, _json(r.availability), _json(r.eligibility), r.completed_at, r.completed_event_id,
            r.declined_at, list(r.decline_reasons), r.declined_event_id, r.personal_text_erased_at, now,
        )

    async def save_baseline(self, episode_id: UUID, s: BaselineScore, by: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO baseline_scores (episode_id, instrument, answers, total, band, caseness, flags, administered_at,"
            " recorded_by, recorded_at) VALUES ($1,$2,$3::jsonb,$4,$5,$6,$7,$8,$9,$10)"
            " ON CONFLICT (episode_id, instrument) DO UPDATE SET answers=EXCLUDED.answers, total=EXCLUDED.total,"
            " band=EXCLUDED.band, caseness=EXCLUDED.caseness, flags=EXCLUDED.flags,"
            " administered_at=EXCLUDED.administered_at, recorded_by=EXCLUDED.recorded_by, recorded_at=EXCLUDED.recorded_at",
            episode_id, s.instrument, json.dumps(s.answers), s.total, s.band, s.caseness, s.flags, s.administered_at, by, at,
        )

    async def add_risk_review(self, episode_id: UUID, r: RiskReview) -> None:
        await self.conn.execute(
            "INSERT INTO risk_reviews (episode_id, decision, reviewed_by, reviewed_at, note, recorded_at)"
            " VALUES ($1,$2,$3,$4,$5,$6)",
            episode_id, r.decision.value, r.reviewed_by, r.reviewed_at, r.note, r.recorded_at,
        )

    async def erase_review_notes(self, episode_ids: list[UUID]) -> None:
        await self.conn.execute("UPDATE risk_reviews SET note = NULL WHERE episode_id = ANY($1::uuid[])", episode_ids)
