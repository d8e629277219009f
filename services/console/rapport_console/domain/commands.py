"""What a signed-in clinician asks the console to do. The console carries the request to the
service that owns the record, with the clinician's own token (``token``): it never decides a
clinical fact itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from rapport_shared.contracts.outcomes import AlertAction


@dataclass(frozen=True)
class AcknowledgeAlert:
    """Stop the alert's escalation to on-call (the notifier's)."""

    episode_id: UUID
    alert_id: UUID
    actor: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class ResolveAlert:
    """Record what was done about the alert (outcomes')."""

    episode_id: UUID
    alert_id: UUID
    actor: str
    action: AlertAction
    action_text: str | None
    token: str = field(repr=False)
