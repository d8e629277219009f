"""Intake's use cases: plain functions ``handle(cmd, uow)``."""

from __future__ import annotations

import uuid
from uuid import UUID

from rapport_shared.contracts import BaselineScore, IntakeCompletedV1
from rapport_shared.http.errors import Invalid, NotFound
from rapport_shared.instruments import AnswerError, UnknownInstrument, score
from rapport_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain import commands
from ..domain.model import Referral, check_focus


async def open_referral(cmd: commands.OpenReferral, uow: UnitOfWork, actor: str) -> Referral:
    referral = Referral(
        episode_id=uuid.uuid4(), person_id=cmd.person_id, referral_source=cmd.referral_source,
        target_condition=cmd.target_condition, created_at=uow.now(),
    )
    await repository.add(uow.conn, referral, created_by=actor)
    return referral


def score_baseline(items: list[commands.BaselineSubmission]) -> dict[str, BaselineScore]:
    scored: dict[str, BaselineScore] = {}
    for i, item in enumerate(items):
        try:
            result = score(item.instrument, item.answers)
        except UnknownInstrument as exc:
            raise Invalid(str(exc), field=f"baseline[{i}].instrument") from exc
        except AnswerError as exc:
            raise Invalid(exc.reason, field=f"baseline[{i}].{exc.field}") from exc
        scored[item.instrument] = BaselineScore(
            instrument=item.instrument, answers=item.answers, total=float(result.total), band=result.band,
            caseness=result.caseness, flags=list(result.flags), administered_at=item.administered_at,
        )
    return scored


async def complete_intake(cmd: commands.CompleteIntake, uow: UnitOfWork, episode_id: UUID) -> Referral:
    """Record the remaining facts and complete. Completing twice returns the first result, no new event."""
    referral = await repository.get(uow.conn, episode_id, for_update=True)
    if referral is None:
        raise NotFound(f"no referral {episode_id}", field="episode_id")
    if referral.status == "completed":
        return referral
    check_focus(cmd.focus)
    referral.template_id = cmd.template_id
    referral.clinician_id = cmd.clinician_id
    referral.focus = cmd.focus
    referral.availability = cmd.availability
    referral.baseline.update(score_baseline(cmd.baseline))
    referral.complete(uow.now())
    event = await uow.emit(
        IntakeCompletedV1(
            episode_id=referral.episode_id, person_id=referral.person_id, target_condition=referral.target_condition,
            template_id=referral.template_id, focus=referral.focus, clinician_id=referral.clinician_id,
            availability=referral.availability, baseline_scores=list(referral.baseline.values()),
            referred_at=referral.created_at, completed_at=referral.completed_at,
        )
    )
    referral.completed_event_id = UUID(event.id)
    await repository.save(uow.conn, referral)
    return referral
