"""Messages on the services' own topics: CloudEvents like the partner contract, but not part of it
(no partner reads them, they are not in ``EVENT_MODELS`` nor in the compatibility baseline).

Their JSON Schemas are published beside the partner ones, under ``docs/events/schemas/internal/``
(``$id`` and ``ce_dataschema``: ``envelope.schema_uri(type, "internal")``), and the AsyncAPI
document describes their topics (``python -m rapport_tools.docs``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, ClassVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from .topics import CLOCK


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc)


class ClockAdvancedV1(BaseModel):
    """Simulated time moved forward: services in simulation mode take "now" from the latest tick
    (``rapport_shared.clock``). Only in simulation mode (tests, demos); no personal data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str] = "rapport.clock.advanced.v1"
    topic: ClassVar[str] = CLOCK
    subject: ClassVar[str] = "clock"  # the record key and ce_subject of every tick
    schema_collection: ClassVar[str] = "internal"

    now: Annotated[AwareDatetime, AfterValidator(_utc)] = Field(
        description="the new simulated time, RFC 3339 in UTC; a tick earlier than the current simulated time is ignored")


# type → model of every internal message with a published schema.
INTERNAL_MODELS: dict[str, type[BaseModel]] = {m.event_type: m for m in (ClockAdvancedV1,)}
