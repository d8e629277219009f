"""The event the in-process benchmarks write and read: a real contract (``PhaseChangedV1``, the
same envelope, headers and JSON as the scheduler's) sent to a benchmark topic instead of
``rapport.course``, so a benchmark never writes into a topic a service or a test reads."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from rapport_shared.contracts import PhaseChangedV1


def model_on(topic: str) -> type[PhaseChangedV1]:
    """``PhaseChangedV1`` routed to ``topic`` (same event type; not added to the contract registry)."""
    return type(f"BenchPhaseChanged_{uuid.uuid4().hex[:6]}", (PhaseChangedV1,), {"topic": topic, "__module__": __name__})


def phase_changed(model: type[PhaseChangedV1], episode_id: uuid.UUID) -> PhaseChangedV1:
    return model(episode_id=episode_id, course_id=uuid.uuid5(episode_id, "course"), from_phase="initial",
                 to_phase="middle", effective_from_session=4, reason="checklist_complete", sessions_remaining=12,
                 changed_at=datetime.now(timezone.utc))


def episodes(count: int = 100) -> list[uuid.UUID]:
    """A fixed set of episode ids (record keys), spread over the topic's partitions."""
    return [uuid.uuid4() for _ in range(count)]
