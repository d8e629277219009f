"""CloudEvents 1.0 in Kafka *binary* mode (architecture.md, "Envelope").

The record value is the event's ``data`` as JSON; the attributes travel as ``ce_*`` headers.
The record key is the episode id, so all events of an episode stay in order on one partition.
Any Kafka client can read this with nothing but the published JSON Schemas.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
# ``ce_dataschema`` is a URI (CloudEvents 1.0): absolute, ``<base>events/<type>.json``. The base is
# where a deployment publishes ``docs/events/schemas/`` (docs/partners.md, "Schema URIs"); the
# default names a reserved example domain (RFC 2606), so nobody mistakes it for a live host.
SCHEMA_BASE_ENV = "RAPPORT_SCHEMA_BASE_URI"
DEFAULT_SCHEMA_BASE = "https://schemas.rapport.example/"

REQUIRED_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject")


class EnvelopeError(ValueError):
    """A record that is not a valid Rapport CloudEvent. ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: dict[str, Any]
    dataschema: str = ""
    correlation_id: str | None = None
    traceparent: str | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> bytes:
        return self.subject.encode()


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: dict[str, str]


def schema_base() -> str:
    """The base URI of the published schemas: ``$RAPPORT_SCHEMA_BASE_URI`` or the default, always
    ending in ``/``. Raises ``ValueError`` for a value that is not an absolute http(s) URI."""
    return _checked_base(os.environ.get(SCHEMA_BASE_ENV, "").strip() or DEFAULT_SCHEMA_BASE)


@cache
def _checked_base(base: str) -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{SCHEMA_BASE_ENV}={base!r}: must be an absolute http(s) URI without query or fragment")
    return base if base.endswith("/") else base + "/"


def schema_uri(event_type: str, collection: str = "events") -> str:
    """The ``ce_dataschema`` of ``event_type`` and the ``$id`` of its published JSON Schema.
    ``collection`` is the folder under ``docs/events/schemas/``: ``events`` (the partner contract)
    or ``internal`` (the services' own topics, e.g. the simulated clock)."""
    return f"{schema_base()}{collection}/{event_type}.json"


schema_base()  # a misconfigured base stops the process at start, not at its first event


def new_event(
    *,
    type: str,
    source: str,
    subject: str,
    data: BaseModel | Mapping[str, Any],
    time: datetime,
    id: str | None = None,
    correlation_id: str | None = None,
    traceparent: str | None = None,
    dataschema: str | None = None,
) -> CloudEvent:
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    if time.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return CloudEvent(
        id=id or str(uuid.uuid4()),
        source=source,
        type=type,
        time=time.astimezone(timezone.utc),
        subject=subject,
        data=payload,
        dataschema=dataschema or schema_uri(type),
        correlation_id=correlation_id,
        traceparent=traceparent,
    )


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def encode(event: CloudEvent) -> KafkaRecord:
    headers = {
        "content-type": CONTENT_TYPE,
        "ce_specversion": SPEC_VERSION,
        "ce_id": event.id,
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_time": format_time(event.time),
        "ce_subject": event.subject,
        "ce_dataschema": event.dataschema or schema_uri(event.type),
    }
    if event.correlation_id:
        headers["correlation_id"] = event.correlation_id
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    # allow_nan=False: NaN/Infinity are not JSON and every consumer would dead-letter them.
    value = json.dumps(event.data, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    return KafkaRecord(key=event.key, value=value, headers=headers)


# Headers a decoder reads: each may appear at most once (two ``ce_type`` headers would let two
# readers disagree on what the record is).
SINGLE_HEADERS = (*REQUIRED_HEADERS, "ce_dataschema", "content-type", "correlation_id", "traceparent")
MAX_HEADER_BYTES = 4096  # per header value; a ce_* attribute is short
_KNOWN_HEADERS = frozenset(SINGLE_HEADERS)  # the rest travel on as the event's extra headers


def _header_map(headers: Iterable[tuple[str, bytes | str | None]] | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(headers, (list, tuple)):
        # The common case, as Kafka clients hand them over: (text, UTF-8 bytes) pairs, no name twice,
        # none too long. Anything else falls through to the checks below, which name what is wrong.
        try:
            out = {name: raw.decode("utf-8") for name, raw in headers
                   if type(name) is str and len(raw) <= MAX_HEADER_BYTES}
            if len(out) == len(headers):
                return out
        except Exception:  # noqa: S110 - the checked path below reports it
            pass
    return _checked_header_map(headers)


def _checked_header_map(headers: Iterable[tuple[str, bytes | str | None]] | Mapping[str, Any]) -> dict[str, str]:
    try:
        items = list(headers.items() if isinstance(headers, Mapping) else headers)
    except Exception as exc:  # not iterable, or not pairs
        raise EnvelopeError("headers", f"are not a list of (name, value): {type(exc).__name__}") from None
    out: dict[str, str] = {}
    for item in items:
        try:
            name, raw = item
        except (TypeError, ValueError):
            raise EnvelopeError("headers", "are not a list of (name, value)") from None
        if not isinstance(name, str):
            raise EnvelopeError("headers", f"a header name is {type(name).__name__}, not text")
        if name in out and name in SINGLE_HEADERS:
            raise EnvelopeError(f"header {name}", "appears more than once")
        if raw is None:
            out[name] = ""
            continue
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = bytes(raw)
            if len(raw) > MAX_HEADER_BYTES and name in SINGLE_HEADERS:
                raise EnvelopeError(f"header {name}", f"is longer than {MAX_HEADER_BYTES} bytes")
            try:
                out[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise EnvelopeError(f"header {name}", "is not UTF-8") from None
        elif isinstance(raw, str):
            out[name] = raw
        else:
            raise EnvelopeError(f"header {name}", f"is {type(raw).__name__}, not bytes or text")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object has a duplicate key")
    return out


def parse_json(value: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, no duplicate object keys. Raises ``EnvelopeError``
    for anything else, including a document nested too deeply to parse (``RecursionError``)."""
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("value", "is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise EnvelopeError("value", "is nested too deeply") from None
    except MemoryError:
        raise EnvelopeError("value", "is too large to parse") from None
    except (ValueError, TypeError) as exc:
        raise EnvelopeError("value", f"is not JSON: {str(exc)[:200]}") from None


def decode(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | Mapping[str, Any]) -> CloudEvent:
    """Validate a Kafka record as a Rapport CloudEvent. Raises ``EnvelopeError`` naming the field
    (and nothing else, whatever the bytes: consumers dead-letter on it)."""
    try:
        return _decode(value, headers)
    except EnvelopeError:
        raise
    except RecursionError:
        raise EnvelopeError("value", "is nested too deeply") from None
    except Exception as exc:  # a shape nobody foresaw: still a bad record, never a crash
        raise EnvelopeError("record", f"cannot be decoded: {type(exc).__name__}") from exc


def _decode(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | Mapping[str, Any]) -> CloudEvent:
    h = _header_map(headers)
    for name in REQUIRED_HEADERS:
        if not h.get(name):
            raise EnvelopeError(f"header {name}", "is missing")
    if h["ce_specversion"] != SPEC_VERSION:
        raise EnvelopeError("header ce_specversion", f"must be {SPEC_VERSION}, got {h['ce_specversion']!r}")
    try:
        uuid.UUID(h["ce_id"])
    except ValueError:
        raise EnvelopeError("header ce_id", "must be a UUID") from None
    try:
        time = datetime.fromisoformat(h["ce_time"].replace("Z", "+00:00"))
    except ValueError:
        raise EnvelopeError("header ce_time", "must be an RFC 3339 timestamp") from None
    if time.tzinfo is None:
        raise EnvelopeError("header ce_time", "must carry a UTC offset")
    content_type = h.get("content-type", CONTENT_TYPE) or CONTENT_TYPE
    if content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise EnvelopeError("header content-type", f"must be {CONTENT_TYPE}, got {content_type!r}")
    if value is None:
        raise EnvelopeError("value", "is empty (a tombstone is not an event)")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EnvelopeError("value", f"is {type(value).__name__}, not bytes")
    data = parse_json(value)
    if not isinstance(data, dict):
        raise EnvelopeError("value", "must be a JSON object")
    return CloudEvent(
        id=h["ce_id"],
        source=h["ce_source"],
        type=h["ce_type"],
        time=time,
        subject=h["ce_subject"],
        data=data,
        dataschema=h.get("ce_dataschema", ""),
        correlation_id=h.get("correlation_id") or None,
        traceparent=h.get("traceparent") or None,
        extra_headers={k: v for k, v in h.items() if k not in _KNOWN_HEADERS},
    )
