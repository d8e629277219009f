"""Build the AsyncAPI 3.0 document of every Rapport topic and event type, from the code.

Sources, so the document cannot drift from what runs:

* channels and messages — ``contracts.EVENT_MODELS`` (type, topic, pydantic model → JSON Schema,
  the same rendering as the committed ``docs/events/schemas/events/`` files, ``$defs`` hoisted into
  ``components/schemas``);
* message headers — the CloudEvents binary-mode envelope of ``envelope.encode`` (``ce_type``,
  ``ce_source`` and ``ce_dataschema`` fixed per message);
* record key and Kafka bindings — every record is keyed by the episode id; topic settings are the
  services' defaults (``ServiceSettings.topic_partitions``);
* operations — ``send`` by the service that writes the topic, ``receive`` by each service for the
  event types its handler registry consumes (``@handlers.handles(Model)`` of an event model), ``send``
  to the dead-letter topics by every consuming service; the services are the installed ones, each
  with the Kafka access it declares (``rapport_tools.services``).

Written directly rather than merged from FastStream's per-service export: the services attach their
subscribers only when they start (after topic creation), and FastStream would describe the raw bytes
body rather than the CloudEvents contract.
"""

from __future__ import annotations

import json
from typing import Any

from rapport_shared import envelope, topics
from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.contracts.base import EventData
from rapport_shared.settings import ServiceSettings

from .. import services as registry
from ..contracts.export import render

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
CATALOGUE_VERSION = "1.0.0"

TOPIC_TEXT = {
    topics.INTAKE: ("Intake decisions", "Referrals that finished intake: completed (eligible, a course can be "
                    "planned) or declined with a reason code. Published by the intake service."),
    topics.COURSE: ("Courses and sessions", "The course plan, every session booking and attendance, phase "
                    "transitions of the IPT state machine and the end of the course. Published by the scheduler."),
    topics.OUTCOMES: ("Outcomes and alerts", "Scored questionnaire submissions, safety and review alerts and the "
                      "end-of-course classification. Published by the outcomes service."),
    topics.NOTIFICATIONS: ("Notifications", "What was sent to whom (by reference, never a contact detail) over "
                           "which channel, or why it failed. Published by the notifier."),
}

DEFAULT_PARTITIONS = ServiceSettings.model_fields["topic_partitions"].default
DEFAULT_REPLICATION = ServiceSettings.model_fields["topic_replication"].default

_HEADER_TEXT = {
    "content-type": "Always `application/json`: the record value is the event's `data` as compact JSON.",
    "ce_specversion": "CloudEvents specification version.",
    "ce_id": "Unique id of the event (UUID). The deduplication key: a consumer may see a record twice "
             "(relay crash, rebalance, replay) and must apply it once.",
    "ce_source": "The producing service.",
    "ce_type": "The event type and version; selects the payload schema.",
    "ce_time": "When it happened, RFC 3339 in UTC (`2026-11-26T09:30:00Z`).",
    "ce_subject": "The episode id; equals the record key and the payload's `episode_id`.",
    "ce_dataschema": "Path of the payload's JSON Schema in the published docs (`docs/events/schemas/events/`).",
    "correlation_id": "Id of the causal chain: the `ce_id` of the first event of the chain (the intake completion).",
    "traceparent": "W3C trace context, when the producer was traced.",
}


def producers() -> dict[str, str]:
    """shared topic → the service that writes it (as the services declare their Kafka access)."""
    return {t: name for name, spec in registry.registered().items() for t in spec.kafka.writes
            if t in topics.SHARED_TOPICS}


def _source(event_type: str) -> str:
    return f"/rapport/{producers().get(EVENT_MODELS[event_type].topic, 'unknown')}"


def headers_schema(event_type: str) -> dict[str, Any]:
    """The CloudEvents binary-mode headers of one message (Kafka header values are UTF-8 strings)."""
    s = {"type": "string"}
    props: dict[str, Any] = {
        "content-type": {**s, "const": envelope.CONTENT_TYPE},
        "ce_specversion": {**s, "const": envelope.SPEC_VERSION},
        "ce_id": {**s, "format": "uuid"},
        "ce_source": {**s, "const": _source(event_type)},
        "ce_type": {**s, "const": event_type},
        "ce_time": {**s, "format": "date-time"},
        "ce_subject": {**s, "format": "uuid"},
        "ce_dataschema": {**s, "const": envelope.schema_uri(event_type)},
        "correlation_id": {**s, "format": "uuid"},
        "traceparent": {**s, "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    }
    for name, text in _HEADER_TEXT.items():
        props[name]["description"] = text
    required = ["content-type", *envelope.REQUIRED_HEADERS, "ce_dataschema"]
    return {"type": "object", "required": required, "properties": props,
            "description": "CloudEvents 1.0 attributes in Kafka binary mode. Other headers may appear; ignore them."}


def payload_schema(event_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload schema with refs into components/schemas, its hoisted definitions)."""
    doc = json.loads(render(event_type))
    defs = doc.pop("$defs", {})
    for k in ("$schema", "$id"):
        doc.pop(k, None)
    return doc, defs


def _rewrite_refs(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = f"#/components/schemas/{mapping[v[len('#/$defs/'):]]}"
            else:
                out[k] = _rewrite_refs(v, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, mapping) for v in node]
    return node


def discover_subscriptions() -> dict[str, dict[str, list[str]]]:
    """service → topic → event types it handles: the event models in each installed service's
    handler registry (what its consumer subscribes to)."""
    found: dict[str, dict[str, list[str]]] = {}
    for name, spec in registry.registered().items():
        handlers = spec.load("handlers")
        per_topic: dict[str, list[str]] = {}
        for t in sorted(m.event_type for m in handlers.event_models if m.event_type in EVENT_MODELS):
            per_topic.setdefault(EVENT_MODELS[t].topic, []).append(t)
        if per_topic:
            found[name] = per_topic
    return found


def _message(event_type: str, model: type[EventData]) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip()
    summary = doc.split("\n\n")[0].replace("\n", " ") if doc else event_type
    return {
        "name": event_type,
        "title": model.__name__,
        "summary": summary,
        "contentType": envelope.CONTENT_TYPE,
        "correlationId": {"description": "The causal chain: the id of its first event (the intake completion).",
                          "location": "$message.header#/correlation_id"},
        "headers": headers_schema(event_type),
        "payload": {"$ref": f"#/components/schemas/{event_type}"},
        "bindings": {"kafka": {
            "key": {"type": "string", "format": "uuid",
                    "description": "The episode id (UTF-8). Equals `ce_subject`: one episode's events are in order on one partition."},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
        "tags": [{"name": model.topic}],
        "x-json-schema": f"events/schemas/events/{event_type}.json",
    }


def _channel_binding(topic: str, policy: str = "delete", partitions: int | None = DEFAULT_PARTITIONS) -> dict[str, Any]:
    b: dict[str, Any] = {"topic": topic}
    if partitions:
        b["partitions"] = partitions
        b["replicas"] = DEFAULT_REPLICATION
    b["topicConfiguration"] = {"cleanup.policy": [policy]}
    b["bindingVersion"] = KAFKA_BINDING_VERSION
    return b


def _private_channel() -> tuple[dict[str, Any], dict[str, Any]]:
    message = {
        "name": "contact.v1",
        "title": "Encrypted contact record",
        "summary": "A person's contact details and channel preferences, encrypted (AES-256-GCM); null = erased.",
        "description": "Not a CloudEvent and not part of the partner contract: a compacted table keyed by the "
                       "pseudonymous person id, written by intake and readable only by the notifier "
                       "(see `rapport_shared/private_contacts.py`).",
        "contentType": "application/octet-stream",
        "headers": {"type": "object", "required": ["rapport_record"], "properties": {
            "rapport_record": {"type": "string", "const": "contact.v1"},
            "rapport_alg": {"type": "string", "const": "A256GCM", "description": "values only"},
            "rapport_kid": {"type": "string", "description": "key id of the key that encrypted the value"},
            "rapport_erased": {"type": "string", "const": "true", "description": "tombstones only"},
        }},
        "payload": {"type": ["string", "null"], "format": "binary",
                    "description": "12-byte nonce || AES-256-GCM ciphertext + tag of the JSON contact record; "
                                   "associated data `rapport.private.contacts/v1|<kid>|<person id>`. Null: tombstone."},
        "bindings": {"kafka": {"key": {"type": "string", "description": "pseudonymous person id (UTF-8)"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    channel = {
        "address": topics.PRIVATE_CONTACTS,
        "title": "Private contacts (restricted)",
        "description": "Compacted and access-restricted: intake writes, only the notifier reads; no partner "
                       "principal has any right on it.",
        "messages": {"contact.v1": {"$ref": "#/components/messages/contact.v1"}},
        "bindings": {"kafka": _channel_binding(topics.PRIVATE_CONTACTS, "compact")},
        "tags": [{"name": "private"}],
    }
    return channel, message


def _dlq_channel(groups: list[str], consumed: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    dlq_headers = {
        "dlq_reason": ("envelope | type_topic_mismatch | contract | rejected | handler | consumer_error", None),
        "dlq_error": ("the error, at most 2000 characters", None),
        "dlq_original_topic": ("topic the record was read from", None),
        "dlq_original_partition": ("its partition (decimal)", None),
        "dlq_original_offset": ("its offset (decimal)", None),
        "dlq_consumer_group": ("the consumer group that gave up on it", None),
        "dlq_attempts": ("handler attempts made (decimal)", None),
        "dlq_failed_at": ("RFC 3339 UTC", "date-time"),
        "dlq_value_omitted": ("\"true\" when the value was too large for the DLQ and left out (read it at the "
                              "original offset)", None),
    }
    props = {}
    for name, (text, fmt) in dlq_headers.items():
        props[name] = {"type": "string", "description": text, **({"format": fmt} if fmt else {})}
    props["dlq_reason"]["enum"] = ["envelope", "type_topic_mismatch", "contract", "rejected", "handler", "consumer_error"]
    message = {
        "name": "dead-letter",
        "title": "Dead-lettered record",
        "summary": "A record a consumer group could not apply: original key, value and headers, plus `dlq_*` headers.",
        "headers": {"type": "object", "required": sorted(set(dlq_headers) - {"dlq_value_omitted"}), "properties": props,
                    "description": "The original record's headers (usually the CloudEvents `ce_*` ones) plus these."},
        "payload": {"description": "The original record value, byte for byte (normally the event's JSON data)."},
        "bindings": {"kafka": {"key": {"type": "string", "description": "the original record key"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    channel = {
        "address": "{topic}.dlq.{group}",
        "title": "Dead letters (internal)",
        "description": "One dead-letter topic per (topic, consumer group). Inspect and redrive with "
                       "`rapport dlq list` / `rapport dlq redrive` (docs/replay.md).",
        "parameters": {
            "topic": {"description": "the topic the record came from", "enum": consumed},
            "group": {"description": "the consumer group", "enum": groups},
        },
        "messages": {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
        "tags": [{"name": "internal"}],
    }
    return channel, message


def _clock_channel() -> tuple[dict[str, Any], dict[str, Any]] | None:
    try:
        from rapport_shared import clock
    except ImportError:  # pragma: no cover
        return None
    topic, event_type = getattr(clock, "CLOCK_TOPIC", None), getattr(clock, "TICK_TYPE", None)
    if not topic or not event_type:
        return None
    message = {
        "name": event_type,
        "title": "Clock tick (simulation mode only)",
        "summary": "Simulated time moved forward; services in simulation mode take 'now' from the latest tick.",
        "contentType": envelope.CONTENT_TYPE,
        "headers": {"type": "object", "properties": {
            "ce_type": {"type": "string", "const": event_type},
            "ce_subject": {"type": "string", "const": "clock"}}},
        "payload": {"type": "object", "required": ["now"], "properties": {"now": {"type": "string", "format": "date-time"}}},
    }
    channel = {
        "address": topic,
        "title": "Simulated clock (internal)",
        "description": "Single partition; used only when the services run in simulation mode (tests, demos). "
                       "Not part of the partner contract.",
        "messages": {event_type: {"$ref": f"#/components/messages/{event_type}"}},
        "bindings": {"kafka": _channel_binding(topic, partitions=1)},
        "tags": [{"name": "internal"}],
    }
    return channel, message


def build() -> dict[str, Any]:
    subs = discover_subscriptions()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    by_topic: dict[str, list[str]] = {}
    for t in sorted(EVENT_MODELS):
        by_topic.setdefault(EVENT_MODELS[t].topic, []).append(t)

    hoisted: dict[str, Any] = {}
    for t in sorted(EVENT_MODELS):
        payload, defs = payload_schema(t)
        # Same name and same content across types → one shared component; a clash → "<type>.<Name>".
        mapping = {name: name for name in defs}
        changed = True
        while changed:
            changed = False
            for name, definition in defs.items():
                target = mapping[name]
                if target in hoisted and hoisted[target] != _rewrite_refs(definition, mapping):
                    mapping[name] = f"{t}.{name}"
                    changed = target != mapping[name]
        for name, definition in defs.items():
            hoisted[mapping[name]] = _rewrite_refs(definition, mapping)
        schemas[t] = _rewrite_refs(payload, mapping)
        messages[t] = _message(t, EVENT_MODELS[t])
    schemas.update(sorted(hoisted.items()))

    for topic in [*topics.SHARED_TOPICS, *sorted(set(by_topic) - set(topics.SHARED_TOPICS))]:
        title, text = TOPIC_TEXT.get(topic, (topic, ""))
        channels[topic] = {
            "address": topic,
            "title": title,
            "description": text + " Keyed by episode id: every event of an episode is in order on one partition.",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in by_topic.get(topic, [])},
            "bindings": {"kafka": _channel_binding(topic)},
            "tags": [{"name": "partner"}],
        }
        producer = producers().get(topic)
        if producer and by_topic.get(topic):
            operations[f"{producer}.send.{topic}"] = {
                "action": "send",
                "title": f"{producer} publishes {topic}",
                "summary": "Through the transactional outbox: idempotent producer, acks=all, key = episode id.",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in by_topic[topic]],
                "bindings": {"kafka": {"clientId": {"type": "string", "enum": [f"rapport-{producer}"]},
                                       "bindingVersion": KAFKA_BINDING_VERSION}},
                "tags": [{"name": f"service:{producer}"}],
            }

    for svc, per_topic in sorted(subs.items()):
        for topic, types in sorted(per_topic.items()):
            operations[f"{svc}.receive.{topic}"] = {
                "action": "receive",
                "title": f"{svc} consumes {topic}",
                "summary": "Commit after effect; duplicates skipped by ce_id (inbox); other types on the topic are ignored.",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": [{"$ref": f"#/channels/{topic}/messages/{t}"} for t in types],
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [f"rapport-{svc}"]},
                                       "clientId": {"type": "string", "enum": [f"rapport-{svc}"]},
                                       "bindingVersion": KAFKA_BINDING_VERSION}},
                "tags": [{"name": f"service:{svc}"}],
            }

    private_channel, private_message = _private_channel()
    channels["rapport.private.contacts"] = private_channel
    messages["contact.v1"] = private_message
    private = {"channel": {"$ref": "#/channels/rapport.private.contacts"},
               "messages": [{"$ref": "#/channels/rapport.private.contacts/messages/contact.v1"}]}
    specs = registry.registered()
    writers = [n for n, s in specs.items() if topics.PRIVATE_CONTACTS in s.kafka.writes]
    readers = [n for n, s in specs.items() if topics.PRIVATE_CONTACTS in s.kafka.reads
               or any(topics.PRIVATE_CONTACTS.startswith(p) for p in s.kafka.read_prefixes)]
    for svc in writers:
        operations[f"{svc}.send.rapport.private.contacts"] = {
            "action": "send", "title": f"{svc} publishes encrypted contacts", **private,
            "tags": [{"name": f"service:{svc}"}]}
    for svc in readers:
        only = " (the only reader)" if len(readers) == 1 else ""
        operations[f"{svc}.receive.rapport.private.contacts"] = {
            "action": "receive", "title": f"{svc} reads contacts{only}", **private,
            "tags": [{"name": f"service:{svc}"}]}

    groups = sorted(f"rapport-{svc}" for svc in subs)
    consumed = sorted({topic for per in subs.values() for topic in per})
    dlq_channel, dlq_message = _dlq_channel(groups, consumed)
    channels["dead-letters"] = dlq_channel
    messages["dead-letter"] = dlq_message
    for svc in sorted(subs):
        operations[f"{svc}.send.dead-letters"] = {
            "action": "send", "title": f"{svc} dead-letters what it cannot apply",
            "channel": {"$ref": "#/channels/dead-letters"},
            "messages": [{"$ref": "#/channels/dead-letters/messages/dead-letter"}],
            "tags": [{"name": f"service:{svc}"}],
        }

    clock = _clock_channel()
    if clock:
        channel, message = clock
        channels[channel["address"]] = channel
        messages[message["name"]] = message

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:rapport:events",
        "info": {
            "title": "Rapport events",
            "version": CATALOGUE_VERSION,
            "description": (
                f"Every topic and event type of Rapport's services ({', '.join(specs)}).\n\n"
                "Envelope: CloudEvents 1.0 in Kafka **binary mode**: the record value is the event's `data` as "
                "JSON, the attributes are `ce_*` headers, the record key is the episode id. Partners read the "
                "topics tagged `partner` with any Kafka client and the published JSON Schemas; they must ignore "
                "unknown fields, unknown event types and unknown enum codes, and deduplicate by `ce_id`. A "
                "breaking change comes as a new type version (`.v2`) beside the old one.\n\n"
                "Generated by `uv run python -m rapport_tools.docs` from the contract models; do not edit."),
            "tags": [
                {"name": "partner", "description": "Shared topics: pseudonymous ids and coded facts only; partners may read them."},
                {"name": "private", "description": "Access-restricted; never partner-visible."},
                {"name": "internal", "description": "Operational topics of the services; not part of the partner contract."},
            ],
        },
        "defaultContentType": envelope.CONTENT_TYPE,
        "servers": {
            "development": {
                "host": "localhost:9092", "protocol": "kafka", "protocolVersion": "4.3.1",
                "description": "The compose stack (`bash deploy/up.sh`): PLAINTEXT on 127.0.0.1 only.",
            },
            "partner": {
                "host": "{bootstrap}", "protocol": "kafka",
                "description": "A deployment's bootstrap servers, as given to the partner.",
                "variables": {"bootstrap": {"description": "host:port of a broker", "default": "localhost:9092"}},
            },
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": schemas,
            "messages": messages,
        },
    }


def render_json() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
