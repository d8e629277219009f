"""One handler form for every service: ``@handlers.handles(Model) async def fn(msg, uow)``.

A service keeps one :class:`HandlerRegistry` (``service_layer/handlers.py``). Every message —
an event read from Kafka (an ``EventData`` model), a command built by the HTTP edge, a due timer
(:meth:`HandlerRegistry.timer`) — goes to exactly one handler, found by the message's type, with
the service's unit of work (its repositories, settings, clock and outbox). Entrypoints only
translate HTTP or Kafka into messages:

- Kafka: :meth:`HandlerRegistry.subscribe` registers every event model with the consumer, which
  opens the transaction, claims the inbox row and calls the handler with a fresh unit of work;
- HTTP: :meth:`MessageBus.handle` runs a command in its own unit of work (retrying a deadlock
  victim from the start) and returns what the handler returns;
- timers: :attr:`HandlerRegistry.timer_handlers` is what the timer runner calls.

For a high-volume event whose effect can be one statement for many records,
``@handlers.handles_many(Model) async def fn(msgs, uow)`` takes a list: the consumer hands it a
partition's consecutive records of those types together (``rapport_shared.consumer``, "Set-based
handlers"), or one at a time when it looks for a failing record. It has effects only: it emits no
events (its unit of work has no single cause).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, TypeVar

from .contracts.base import EventData
from .uow import UnitOfWork, UnitOfWorkFactory, run_retrying

M = TypeVar("M")
U = TypeVar("U", bound=UnitOfWork)
Handler = Callable[[Any, Any], Awaitable[Any]]


class HandlerRegistry(Generic[U]):
    """Which function handles which message type (and which timer kind)."""

    def __init__(self) -> None:
        self._by_type: dict[type, Handler] = {}
        self._by_timer: dict[str, Handler] = {}
        self._many: set[Handler] = set()  # set-based: fn(list of messages, uow)

    def handles(self, *message_types: type) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for t in message_types:
                if t in self._by_type:
                    raise ValueError(f"two handlers for {t.__name__}")
                self._by_type[t] = fn
            return fn

        return register

    def handles_many(self, *event_models: type[EventData]) -> Callable[[Handler], Handler]:
        """``fn(msgs: list, uow)`` applies many events of these types at once (effects only)."""

        def register(fn: Handler) -> Handler:
            self.handles(*event_models)(fn)
            self._many.add(fn)
            return fn

        return register

    def timer(self, *kinds: str) -> Callable[[Handler], Handler]:
        """``fn(timer, uow)`` fires due timers of these kinds."""

        def register(fn: Handler) -> Handler:
            for kind in kinds:
                if kind in self._by_timer:
                    raise ValueError(f"two handlers for timer kind {kind}")
                self._by_timer[kind] = fn
            return fn

        return register

    def handler_for(self, message: object) -> Handler:
        try:
            fn = self._by_type[type(message)]
        except KeyError:
            raise LookupError(f"no handler for {type(message).__name__}") from None
        if fn in self._many:  # one message to a set-based handler: a list of one
            return lambda msg, uow: _effects_only(fn, [msg], uow)
        return fn

    async def dispatch(self, message: object, uow: U) -> Any:
        return await self.handler_for(message)(message, uow)

    @property
    def message_types(self) -> list[type]:
        return list(self._by_type)

    @property
    def event_models(self) -> list[type[EventData]]:
        """The Kafka events this service consumes (what its consumer subscribes to)."""
        return [t for t in self._by_type if isinstance(t, type) and issubclass(t, EventData)]

    @property
    def timer_handlers(self) -> dict[str, Callable[[UnitOfWork, Any], Awaitable[None]]]:
        """In the timer runner's calling order ``(uow, timer)``."""
        return {kind: _timer_call(fn) for kind, fn in self._by_timer.items()}

    def subscribe(self, consumer: Any) -> None:
        """Register every event model with an ``EventConsumer`` (one dispatch: by type)."""
        for model in self.event_models:
            fn = self._by_type[model]
            consumer.register(model, _many_call(fn) if fn in self._many else _event_call(fn))


def _event_call(fn: Handler) -> Callable[[UnitOfWork, Any, Any], Awaitable[None]]:
    async def call(uow: UnitOfWork, event: Any, data: Any) -> None:  # the consumer's calling order
        await fn(data, uow)

    call.__name__ = getattr(fn, "__name__", "handler")
    return call


def _many_call(fn: Handler) -> Callable[[UnitOfWork, Any, Any], Awaitable[None]]:
    """A set-based handler as the consumer calls it: one record (``call``) or a run (``call.many``);
    ``many_key`` says which records' handlers are the same function."""

    async def call(uow: UnitOfWork, event: Any, data: Any) -> None:
        await _effects_only(fn, [data], uow)

    async def many(uow: UnitOfWork, events: list[Any], datas: list[Any]) -> None:
        await _effects_only(fn, datas, uow)

    call.__name__ = getattr(fn, "__name__", "handler")
    call.many, call.many_key = many, fn  # type: ignore[attr-defined]
    return call


async def _effects_only(fn: Handler, msgs: list[Any], uow: UnitOfWork) -> None:
    """A set-based handler's call: refused if it emitted (its unit of work has no single cause)."""
    await fn(msgs, uow)
    if getattr(uow, "emitted", None):
        raise TypeError(f"set-based handler {getattr(fn, '__name__', 'handler')} emitted events")


def _timer_call(fn: Handler) -> Callable[[UnitOfWork, Any], Awaitable[None]]:
    async def call(uow: UnitOfWork, timer: Any) -> None:
        await fn(timer, uow)

    call.__name__ = getattr(fn, "__name__", "timer_handler")
    return call


class MessageBus(Generic[U]):
    """Runs a command in its own unit of work: committed when the handler returns, rolled back if
    it raises; a deadlock victim or serialization failure is run again from the start."""

    def __init__(self, registry: HandlerRegistry[U], uow: UnitOfWorkFactory) -> None:
        self.registry, self.uow = registry, uow

    async def handle(self, message: object) -> Any:
        handler = self.registry.handler_for(message)  # an unknown type fails before any transaction
        return await run_retrying(self.uow, lambda uow: handler(message, uow))
