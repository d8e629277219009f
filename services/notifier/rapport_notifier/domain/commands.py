"""What callers ask of the notifier over HTTP, as messages for the bus (``service_layer/handlers.py``).

Each carries the ids it acts on and the actor: ``org`` is the organisation of the caller's token
(None: the token names none; refused where the command creates or removes something an
organisation owns), ``partner_id``/``by`` the caller's subject. Input the HTTP models validated
(patterns, types) arrives validated; the rules that need the service's state or settings are the
handlers'."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class PutClinician:
    clinician_id: str
    org: str | None
    email: str | None = None
    phone: str | None = None
    language: str = "en"
    channels: tuple[str, ...] = ()
    working_hours: dict | None = field(default=None, hash=False)


@dataclass(frozen=True)
class EraseClinician:
    clinician_id: str
    org: str | None


@dataclass(frozen=True)
class OncallSlot:
    clinician_id: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class ReplaceOncall:
    """The caller's organisation's rota becomes ``slots``."""

    org: str | None
    slots: tuple[OncallSlot, ...] = ()


@dataclass(frozen=True)
class SetPatientPreferences:
    person_id: str
    language: str | None = None
    quiet_hours: dict | None = field(default=None, hash=False)


@dataclass(frozen=True)
class ErasePatient:
    person_id: str


@dataclass(frozen=True)
class AcknowledgeAlert:
    """Stops the escalation to on-call; ``by``: who acknowledged."""

    alert_id: uuid.UUID
    by: str


@dataclass(frozen=True)
class Subscribe:
    partner_id: str
    org: str | None
    url: str
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class Unsubscribe:
    subscription_id: uuid.UUID
    partner_id: str
    org: str | None


__all__ = ["AcknowledgeAlert", "EraseClinician", "ErasePatient", "OncallSlot", "PutClinician", "ReplaceOncall",
           "SetPatientPreferences", "Subscribe", "Unsubscribe"]
