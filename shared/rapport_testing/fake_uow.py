"""A unit of work without Postgres, for service-layer unit tests (as in *Architecture Patterns
with Python*): a service's fake subclasses it and adds in-memory repositories with the same
methods as its real ones. Events the handler emits are kept in ``emitted`` (the data models, in
order) and ``events`` (the CloudEvents they would have been), nothing is written anywhere;
``committed`` says whether the code under test reached the end of its unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rapport_shared.clock import Clock, ManualClock
from rapport_shared.contracts.base import EventData
from rapport_shared.envelope import CloudEvent, new_event


@dataclass
class FakeUnitOfWork:
    clock: Clock = field(default_factory=lambda: ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)))
    settings: Any = None
    cause: CloudEvent | None = None
    emitted: list[EventData] = field(default_factory=list)
    events: list[CloudEvent] = field(default_factory=list)
    committed: bool = False

    def now(self) -> datetime:
        return self.clock.now()

    async def emit(self, data: EventData, *, event_id: str | None = None,
                   correlation_id: str | None = None) -> CloudEvent:
        event = new_event(type=data.event_type, source="/rapport/test", subject=str(getattr(data, "episode_id", "")),
                          data=data, time=self.now(), id=event_id,
                          correlation_id=correlation_id or (self.cause.correlation_id if self.cause else None))
        self.emitted.append(data)
        self.events.append(event)
        return event

    def of_type(self, model: type[EventData]) -> list[EventData]:
        return [e for e in self.emitted if isinstance(e, model)]
