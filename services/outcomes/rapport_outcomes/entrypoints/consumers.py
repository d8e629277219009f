"""Outcomes' event subscriptions."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import IntakeCompletedV1

from ..service_layer import handlers


def register(runtime, consumer: EventConsumer) -> None:
    @consumer.on(IntakeCompletedV1)
    async def on_intake_completed(uow, event, data: IntakeCompletedV1) -> None:
        await handlers.record_baseline(data, uow, cause_id=event.id)
