"""Scheduler's event subscriptions: thin adapters from an event to a use case."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer, PoisonEvent
from rapport_shared.contracts import IntakeCompletedV1
from rapport_shared.contracts.outcomes import OutcomeEvaluatedV1

from ..domain.errors import InvalidInput
from ..service_layer import handlers


def registrar(deps: handlers.Deps):
    def register(runtime, consumer: EventConsumer) -> None:
        @consumer.on(IntakeCompletedV1)
        async def on_intake_completed(uow, event, data: IntakeCompletedV1) -> None:
            try:
                await handlers.plan_course(data, uow, deps)
            except InvalidInput as exc:  # unknown template, no bookable slot: it will never apply
                raise PoisonEvent(f"cannot plan a course: {exc.field}: {exc.message}") from exc

        @consumer.on(OutcomeEvaluatedV1)
        async def on_outcome_evaluated(uow, event, data: OutcomeEvaluatedV1) -> None:
            await handlers.record_outcome(data, uow, deps)

    return register
