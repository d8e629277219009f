"""The CloudEvents Kafka binding with typed data: a record → (CloudEvent, its pydantic model), and
a model → a record. ``envelope`` does the binary-mode headers; this adds the catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from pydantic import ValidationError

from . import envelope
from .base import EventData
from .envelope import CloudEvent, EnvelopeError, KafkaRecord


def decode_record(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | Mapping[str, Any],
                  key: bytes | None = None) -> tuple[CloudEvent, EventData | None]:
    """Validate a Kafka record (binary mode) and its data against the model of its ``ce_type``.

    Returns the event and the typed data, or ``None`` for a type this version does not know (a
    reader skips those: the contract adds types without notice). Raises ``EnvelopeError`` naming
    the field: a header, ``key`` (when given, it must equal ``ce_subject``) or ``value <field>``."""
    from . import model_for  # the catalogue imports every model module; late, so this module stays light

    event = envelope.decode(value, headers)
    if key is not None and bytes(key) != event.key:
        raise EnvelopeError("key", "differs from ce_subject")
    model = model_for(event.type)
    if model is None:
        return event, None
    try:
        data = model.model_validate(event.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise EnvelopeError(f"value {where}", err["msg"]) from None
    subject = getattr(data, "episode_id", None)
    if subject is not None and str(subject) != event.subject:
        raise EnvelopeError("value episode_id", "differs from ce_subject")
    return event, data


def encode_event(data: EventData, *, source: str, subject: str, time: datetime, id: str | None = None,
                 correlation_id: str | None = None, traceparent: str | None = None) -> KafkaRecord:
    """The record of a typed event: ``ce_type`` and ``ce_dataschema`` from the model."""
    event = envelope.new_event(type=data.event_type, source=source, subject=subject, data=data, time=time, id=id,
                               correlation_id=correlation_id, traceparent=traceparent)
    return envelope.encode(event)
