"""Notifier's event subscriptions: every event type of the catalogue (partner webhooks may ask
for any of them); the notifier's own rules act on the ones they need."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer

from ..service_layer import handlers


def make_register(ctx: handlers.Ctx):
    def register(runtime, consumer: EventConsumer) -> None:
        for model in handlers.event_models():
            async def on_event(uow, event, data, _m=model) -> None:
                uow.cause = event
                await handlers.handle_event(uow, event, data, ctx)

            consumer.register(model, on_event)

    return register
