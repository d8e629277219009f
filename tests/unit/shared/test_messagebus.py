"""The one handler form: dispatch by message type, events subscribed to the consumer, timers by
kind, commands in their own unit of work."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from rapport_shared.contracts import CoursePlannedV1, IntakeCompletedV1
from rapport_shared.messagebus import HandlerRegistry, MessageBus
from rapport_testing.fake_uow import FakeUnitOfWork


class Open(BaseModel):
    name: str


class Close(BaseModel):
    name: str


def registry() -> HandlerRegistry:
    r = HandlerRegistry()

    @r.handles(Open)
    async def open_(msg: Open, uow) -> str:
        return f"opened {msg.name} at {uow.now():%H:%M}"

    @r.handles(IntakeCompletedV1, CoursePlannedV1)
    async def on_event(msg, uow) -> None:
        uow.seen = type(msg).__name__

    @r.timer("course.overdue")
    async def overdue(timer, uow) -> None:
        uow.seen = timer

    return r


async def test_dispatch_by_type_to_one_handler() -> None:
    assert await registry().dispatch(Open(name="a"), FakeUnitOfWork()) == "opened a at 09:00"


async def test_unknown_message_type_is_refused() -> None:
    with pytest.raises(LookupError, match="no handler for Close"):
        await registry().dispatch(Close(name="a"), FakeUnitOfWork())


def test_two_handlers_for_one_type_refused() -> None:
    r = registry()
    with pytest.raises(ValueError, match="two handlers for Open"):
        r.handles(Open)(lambda m, u: None)
    with pytest.raises(ValueError, match="timer kind course.overdue"):
        r.timer("course.overdue")(lambda m, u: None)


async def test_events_subscribe_in_consumer_order_and_timers_in_runner_order() -> None:
    registered: dict = {}

    class Consumer:
        def register(self, model, fn) -> None:
            registered[model] = fn

    r = registry()
    r.subscribe(Consumer())
    assert set(registered) == {IntakeCompletedV1, CoursePlannedV1} == set(r.event_models)
    uow = FakeUnitOfWork()
    await registered[CoursePlannedV1](uow, object(), CoursePlannedV1.model_construct())
    assert uow.seen == "CoursePlannedV1"
    await r.timer_handlers["course.overdue"](uow, "t-1")
    assert uow.seen == "t-1"


async def test_bus_runs_a_command_in_its_own_unit() -> None:
    class Factory:  # what UnitOfWorkFactory gives: an async context manager per unit
        def __init__(self) -> None:
            self.units: list[FakeUnitOfWork] = []

        def __call__(self):
            factory = self

            class Scope:
                async def __aenter__(self):
                    factory.units.append(FakeUnitOfWork())
                    return factory.units[-1]

                async def __aexit__(self, *exc) -> None:
                    factory.units[-1].committed = exc[0] is None

            return Scope()

    f = Factory()
    assert await MessageBus(registry(), f).handle(Open(name="b")) == "opened b at 09:00"
    assert [u.committed for u in f.units] == [True]
    with pytest.raises(LookupError):
        await MessageBus(registry(), f).handle(Close(name="b"))
    assert len(f.units) == 1  # an unknown command opens no unit
