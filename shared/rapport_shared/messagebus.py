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

    def handles(self, *message_types: type) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for t in message_types:
                if t in self._by_type:
                    raise ValueError(f"two handlers for {t.__name__}")
                self._by_type[t] = fn
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
            return self._by_type[type(message)]
        except KeyError:
            raise LookupError(f"no handler for {type(message).__name__}") from None

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
            consumer.register(model, _event_call(self._by_type[model]))


def _event_call(fn: Handler) -> Callable[[UnitOfWork, Any, Any], Awaitable[None]]:
    async def call(uow: UnitOfWork, event: Any, data: Any) -> None:  # the consumer's calling order
        await fn(data, uow)

    call.__name__ = getattr(fn, "__name__", "handler")
    return call


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
