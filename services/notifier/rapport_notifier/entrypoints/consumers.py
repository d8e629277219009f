"""Notifier's event subscriptions."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import CoursePlannedV1

from ..adapters.channels import LogChannel
from ..service_layer import handlers


def register(runtime, consumer: EventConsumer) -> None:
    channel = LogChannel()

    @consumer.on(CoursePlannedV1)
    async def on_course_planned(uow, event, data: CoursePlannedV1) -> None:
        await handlers.notify_course_planned(data, uow, cause_id=event.id, channel=channel)
