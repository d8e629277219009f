"""Scheduler's event subscriptions: thin adapters from an event to a use case."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import IntakeCompletedV1

from ..service_layer import handlers


def register(runtime, consumer: EventConsumer) -> None:
    s = runtime.settings

    @consumer.on(IntakeCompletedV1)
    async def on_intake_completed(uow, event, data: IntakeCompletedV1) -> None:
        await handlers.plan_course(data, uow, session_minutes=s.session_minutes, lead_days=s.first_session_lead_days)
