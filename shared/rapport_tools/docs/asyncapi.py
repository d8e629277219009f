"""Build the AsyncAPI 3.0 document of every Rapport topic and event type, from the code.

Sources, so the document cannot drift from what runs:

* messages — the models: ``contracts.EVENT_MODELS`` (the partner contract) and
  ``contracts.internal.INTERNAL_MODELS`` (the simulated clock's tick), each rendered as its published
  JSON Schema (``contracts.export.render``, ``$defs`` hoisted into ``components/schemas``) with one
  example built from the model (``contracts.examples``: key, headers and value of a real record);
* message headers — the CloudEvents binary-mode envelope of ``envelope.encode``; ``ce_dataschema`` is
  the schema's absolute ``$id`` (``envelope.schema_uri``);
* what each service receives — the event models of its handler registry
  (``@handlers.handles(Model)``: exactly what its consumer subscribes to), per topic;
* what each service sends — the topics it declares it writes (``service.py`` ``KafkaAccess.writes``,
  also its ACLs), with the event types of the topic; its dead-letter topics
  (``topics.dlq_topic(topic, group)``) for every topic its registry consumes;
* the private and internal topics — the private contacts path (encrypted: described as opaque
  bytes, never with the contact record's fields), the person keys, the erasure notices, the clock —
  with the services that read and write them as they declare (``KafkaAccess``);
* the services — the installed ones, from their ``rapport.services`` entry points (``rapport_tools.services``).

Written directly rather than merged from FastStream's per-service export: the services attach their
subscribers only when they start (after topic creation), and FastStream would describe the raw bytes
body rather than the CloudEvents contract.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from rapport_shared import envelope, private_contacts as pc, topics
from rapport_shared.clock import TICK_SOURCE
from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.contracts.internal import INTERNAL_MODELS, ClockAdvancedV1
from rapport_shared.settings import ServiceSettings

from .. import services as registry
from ..contracts.examples import example_record
from .catalogue import FALLBACK
from ..contracts.export import collection_of, model_of, render

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
CLOCK_DRIVER = "clock-driver"  # the test or demo driver (python -m rapport_shared.clock tick), not a service

_HEADER_TEXT = {
    "content-type": "Always `application/json`: the record value is the event's `data` as compact JSON.",
    "ce_specversion": "CloudEvents specification version.",
    "ce_id": "Unique id of the event (UUID). The deduplication key: a consumer may see a record twice "
             "(relay crash, rebalance, replay) and must apply it once.",
    "ce_source": "The producing service.",
    "ce_type": "The event type and version; selects the payload schema.",
    "ce_time": "When it happened, RFC 3339 in UTC (`2026-11-26T09:30:00Z`).",
    "ce_subject": "The episode id; equals the record key and the payload's `episode_id`.",
    "ce_dataschema": "Absolute URI of the payload's JSON Schema: its `$id` (`<base>events/<type>.json`; the base "
                     "is a deployment setting, `RAPPORT_SCHEMA_BASE_URI`, docs/partners.md \"Schema URIs\"). An "
                     "identifier: select the schema by `ce_type`, do not fetch it per record.",
    "correlation_id": "Id of the causal chain: the `ce_id` of the first event of the chain (the intake completion).",
    "traceparent": "W3C trace context, when the producer was traced.",
}


def producers() -> dict[str, str]:
    """shared topic → the service that writes it (as the services declare their Kafka access)."""
    return {t: name for name, spec in registry.registered().items() for t in spec.kafka.writes
            if t in topics.SHARED_TOPICS}


def _source(event_type: str) -> str:
    if event_type == ClockAdvancedV1.event_type:
        return TICK_SOURCE
    return f"/rapport/{producers().get(EVENT_MODELS[event_type].topic, 'unknown')}"


def headers_schema(event_type: str) -> dict[str, Any]:
    """The CloudEvents binary-mode headers of one message (Kafka header values are UTF-8 strings)."""
    s = {"type": "string"}
    subject: dict[str, Any] = {**s, "format": "uuid"}
    if event_type in INTERNAL_MODELS:
        subject = {**s, "const": getattr(INTERNAL_MODELS[event_type], "subject")}
    props: dict[str, Any] = {
        "content-type": {**s, "const": envelope.CONTENT_TYPE},
        "ce_specversion": {**s, "const": envelope.SPEC_VERSION},
        "ce_id": {**s, "format": "uuid"},
        "ce_source": {**s, "const": _source(event_type)},
        "ce_type": {**s, "const": event_type},
        "ce_time": {**s, "format": "date-time"},
        "ce_subject": subject,
        "ce_dataschema": {**s, "format": "uri", "const": envelope.schema_uri(event_type, collection_of(event_type))},
        "correlation_id": {**s, "format": "uuid"},
        "traceparent": {**s, "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    }
    for name, text in _HEADER_TEXT.items():
        props[name]["description"] = text
    if event_type in INTERNAL_MODELS:
        props["ce_subject"]["description"] = "Always the same (the record key): one partition, in order."
        props["correlation_id"]["description"] = "Set by the driver when it has one; nothing follows from a tick."
    required = ["content-type", *envelope.REQUIRED_HEADERS, "ce_dataschema"]
    return {"type": "object", "required": required, "properties": props,
            "description": "CloudEvents 1.0 attributes in Kafka binary mode. Other headers may appear; ignore them."}


def payload_schema(event_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload schema with refs into components/schemas, its hoisted definitions)."""
    doc = json.loads(render(event_type))
    defs = doc.pop("$defs", {})
    # No $id inside the document: it would rebase the component's local $refs (the message's
    # ce_dataschema header states the URI).
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


def _example(event_type: str, model: type[BaseModel]) -> dict[str, Any]:
    record = example_record(model, source=_source(event_type), collection=collection_of(event_type))
    # The example object has no place for the record key (nor extensions): the summary states it.
    return {"name": "example",
            "summary": f"A {event_type} record as its producer writes it, generated from the model; "
                       f"record key `{record.key.decode()}` (= ce_subject).",
            "headers": record.headers, "payload": json.loads(record.value)}


def _message(event_type: str, model: type[BaseModel]) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip()
    summary = " ".join(doc.split("\n\n")[0].split()) if doc else FALLBACK.get(event_type, event_type)
    collection = collection_of(event_type)
    internal = event_type in INTERNAL_MODELS
    key = ({"type": "string", "const": getattr(model, "subject"), "description": "Always the same: one partition, in order."}
           if internal else
           {"type": "string", "format": "uuid",
            "description": "The episode id (UTF-8). Equals `ce_subject`: one episode's events are in order on one partition."})
    message: dict[str, Any] = {
        "name": event_type,
        "title": model.__name__,
        "summary": summary,
        "contentType": envelope.CONTENT_TYPE,
        "headers": headers_schema(event_type),
        "payload": {"$ref": f"#/components/schemas/{event_type}"},
        "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
        "examples": [_example(event_type, model)],
        "tags": [{"name": getattr(model, "topic")}],
        "x-json-schema": f"events/schemas/{collection}/{event_type}.json",
        "x-dataschema": envelope.schema_uri(event_type, collection),
    }
    if not internal:
        message["correlationId"] = {"description": "The causal chain: the id of its first event (the intake completion).",
                                    "location": "$message.header#/correlation_id"}
    return message


def _channel_binding(topic: str, policy: str = "delete", partitions: int | None = DEFAULT_PARTITIONS) -> dict[str, Any]:
    b: dict[str, Any] = {"topic": topic}
    if partitions:
        b["partitions"] = partitions
        b["replicas"] = DEFAULT_REPLICATION
    b["topicConfiguration"] = {"cleanup.policy": [policy]}
    b["bindingVersion"] = KAFKA_BINDING_VERSION
    return b


def _string_headers(spec: dict[str, tuple[str, str | None]], required: list[str]) -> dict[str, Any]:
    props = {}
    for name, (text, const) in spec.items():
        props[name] = {"type": "string", "description": text, **({"const": const} if const else {})}
    return {"type": "object", "required": required, "properties": props}


_OPAQUE = ("Encrypted (AES-256-GCM): the contact record's fields are never described here and never leave the "
           "private path (`rapport_shared/private_contacts.py`).")


def _private_messages() -> dict[str, dict[str, Any]]:
    """The records of the private and internal topics that are not CloudEvents (private_contacts.py)."""
    key = {"type": "string", "description": "pseudonymous person id (UTF-8): one live record per person"}
    binding = {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}}
    alg = ("the value's encryption (values only)", pc.ALGORITHM)
    erased = ("\"true\" on tombstones only (null value)", "true")
    return {
        pc.RECORD_FORMAT_V2: {
            "name": pc.RECORD_FORMAT_V2,
            "title": "Encrypted contact record",
            "summary": "A person's contact details and channel preferences, encrypted with the person's data key; "
                       "null = erased.",
            "description": "Not a CloudEvent and not part of the partner contract: a compacted table written by intake, "
                           "readable only by the notifier. " + _OPAQUE,
            "contentType": "application/octet-stream",
            "headers": _string_headers({pc.H_RECORD: ("record format and version", pc.RECORD_FORMAT_V2), pc.H_ALG: alg,
                                        pc.H_DEK: ("id of the person's data key (on rapport.private.person-keys)", None),
                                        pc.H_ERASED: erased}, [pc.H_RECORD]),
            "payload": {"type": ["string", "null"], "format": "binary", "x-encrypted": True,
                        "description": "12-byte nonce || AES-256-GCM ciphertext + tag; associated data "
                                       "`rapport.private.contacts/v2|<data key id>|<person id>`. Null: tombstone."},
            "bindings": binding,
        },
        pc.RECORD_FORMAT: {
            "name": pc.RECORD_FORMAT,
            "title": "Encrypted contact record (master key; still read)",
            "summary": "Contact records written before per-person data keys: encrypted with a master key.",
            "description": "Still read, no longer written (a republish rewrites them as contact.v2). " + _OPAQUE,
            "contentType": "application/octet-stream",
            "headers": _string_headers({pc.H_RECORD: ("record format and version", pc.RECORD_FORMAT), pc.H_ALG: alg,
                                        pc.H_KID: ("id of the master key that encrypted the value", None),
                                        pc.H_ERASED: erased}, [pc.H_RECORD]),
            "payload": {"type": ["string", "null"], "format": "binary", "x-encrypted": True,
                        "description": "12-byte nonce || AES-256-GCM ciphertext + tag; associated data "
                                       "`rapport.private.contacts/v1|<kid>|<person id>`. Null: tombstone."},
            "bindings": binding,
        },
        pc.KEY_FORMAT: {
            "name": pc.KEY_FORMAT,
            "title": "Wrapped per-person data key",
            "summary": "A person's 32-byte data key, wrapped by a master key; the tombstone destroys it (crypto-shredding).",
            "description": "Compacted; intake writes, the notifier reads. Never a key in clear.",
            "contentType": "application/octet-stream",
            "headers": _string_headers({pc.H_RECORD: ("record format and version", pc.KEY_FORMAT), pc.H_ALG: alg,
                                        pc.H_KID: ("id of the master key that wrapped the data key", None),
                                        pc.H_DEK: ("id of the data key (values only)", None),
                                        pc.H_ERASED: erased}, [pc.H_RECORD]),
            "payload": {"type": ["string", "null"], "format": "binary", "x-encrypted": True,
                        "description": "nonce || AES-256-GCM(master key) of the data key; associated data "
                                       "`rapport.private.person-keys/v1|<kid>|<data key id>|<person id>`. Null: the "
                                       "person was erased and the key destroyed."},
            "bindings": binding,
        },
        pc.ERASURE_FORMAT: {
            "name": pc.ERASURE_FORMAT,
            "title": "Erasure notice",
            "summary": "An organisation's admin erased a person: the pseudonymous id, the organisation and the time only.",
            "description": "Not a CloudEvent and not part of the partner contract: intake writes, outcomes reads (it "
                           "erases the free text it holds). Kept forever (`retention.ms=-1`): a consumer that was down "
                           "for weeks still erases.",
            "contentType": envelope.CONTENT_TYPE,
            "headers": _string_headers({pc.H_RECORD: ("record format and version", pc.ERASURE_FORMAT)}, [pc.H_RECORD]),
            "payload": {"type": "object", "required": ["person_id", "erased_at"], "properties": {
                "person_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
                              "description": "pseudonymous person id; equals the record key"},
                "organisation_id": {"type": ["string", "null"],
                                    "description": "the organisation's pseudonymous code; null = every organisation"},
                "erased_at": {"type": "string", "format": "date-time"}}},
            "bindings": binding,
        },
    }


_PRIVATE_TOPICS = {
    # topic → (title, description, message names, cleanup policy, tag)
    topics.PRIVATE_CONTACTS: ("Private contacts (restricted)",
                              "Compacted and access-restricted: intake writes, only the notifier reads; no partner "
                              "principal has any right on it. The values are encrypted: opaque here by design.",
                              [pc.RECORD_FORMAT_V2, pc.RECORD_FORMAT], "compact", "private"),
    topics.PRIVATE_PERSON_KEYS: ("Per-person data keys (restricted)",
                                 "Compacted and access-restricted: intake writes, only the notifier reads. A tombstone "
                                 "destroys a person's key: their contact records can never be decrypted again.",
                                 [pc.KEY_FORMAT], "compact", "private"),
    topics.ERASURES: ("Erasure notices (internal)",
                      "Intake writes, outcomes reads; pseudonymous ids and organisation codes only.",
                      [pc.ERASURE_FORMAT], "delete", "internal"),
}


def _reads(spec: Any, topic: str) -> bool:
    return topic in spec.kafka.reads or any(topic.startswith(p) for p in spec.kafka.read_prefixes)


def _dlq_message() -> dict[str, Any]:
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
    return {
        "name": "dead-letter",
        "title": "Dead-lettered record",
        "summary": "A record a consumer group could not apply: original key, value and headers, plus `dlq_*` headers.",
        "headers": {"type": "object", "required": sorted(set(dlq_headers) - {"dlq_value_omitted"}), "properties": props,
                    "description": "The original record's headers (usually the CloudEvents `ce_*` ones) plus these."},
        "payload": {"description": "The original record value, byte for byte (normally the event's JSON data)."},
        "bindings": {"kafka": {"key": {"type": "string", "description": "the original record key"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def dead_letter_topics(subs: dict[str, dict[str, list[str]]] | None = None) -> dict[str, tuple[str, str]]:
    """DLQ topic → (the topic it holds records of, the consumer group): one per topic a service's
    registry consumes (``topics.dlq_topic``; a priority lane shares its service's)."""
    subs = discover_subscriptions() if subs is None else subs
    specs = registry.registered()
    return {topics.dlq_topic(topic, specs[svc].group): (topic, specs[svc].group)
            for svc, per_topic in subs.items() for topic in per_topic}


def _op(action: str, svc: str, channel: str, messages: list[str], title: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "title": title, **extra,
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "tags": [{"name": f"service:{svc}"}]}


def build() -> dict[str, Any]:
    subs = discover_subscriptions()
    specs = registry.registered()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    by_topic: dict[str, list[str]] = {}
    for t in sorted(EVENT_MODELS):
        by_topic.setdefault(EVENT_MODELS[t].topic, []).append(t)

    hoisted: dict[str, Any] = {}
    for t in [*sorted(EVENT_MODELS), *sorted(INTERNAL_MODELS)]:
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
        messages[t] = _message(t, model_of(t))
    schemas.update(sorted(hoisted.items()))

    # The shared topics: the partner contract.
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
            operations[f"{producer}.send.{topic}"] = _op(
                "send", producer, topic, by_topic[topic], f"{producer} publishes {topic}",
                summary="Through the transactional outbox: idempotent producer, acks=all, key = episode id.",
                bindings={"kafka": {"clientId": {"type": "string", "enum": [f"rapport-{producer}"]},
                                    "bindingVersion": KAFKA_BINDING_VERSION}})

    for svc, per_topic in sorted(subs.items()):
        for topic, types in sorted(per_topic.items()):
            group = specs[svc].group
            operations[f"{svc}.receive.{topic}"] = _op(
                "receive", svc, topic, types, f"{svc} consumes {topic}",
                summary="The event types its handler registry handles; other types on the topic are skipped. "
                        "Commit after effect; duplicates skipped by ce_id (inbox).",
                bindings={"kafka": {"groupId": {"type": "string", "enum": [group]},
                                    "clientId": {"type": "string", "enum": [group]},
                                    "bindingVersion": KAFKA_BINDING_VERSION}})

    # The private and internal topics: not CloudEvents, as the services declare their access.
    messages.update(_private_messages())
    for topic, (title, text, names, policy, tag) in _PRIVATE_TOPICS.items():
        channels[topic] = {
            "address": topic, "title": title, "description": text,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {"kafka": _channel_binding(topic, policy)},
            "tags": [{"name": tag}],
        }
        for svc, spec in specs.items():
            if topic in spec.kafka.writes:
                operations[f"{svc}.send.{topic}"] = _op("send", svc, topic, names[:1], f"{svc} writes {topic}")
            if _reads(spec, topic):
                readers = [n for n, s in specs.items() if _reads(s, topic)]
                only = " (the only reader)" if readers == [svc] else ""
                operations[f"{svc}.receive.{topic}"] = _op("receive", svc, topic, names, f"{svc} reads {topic}{only}")

    # The simulated clock (simulation mode only).
    clock_type = ClockAdvancedV1.event_type
    channels[topics.CLOCK] = {
        "address": topics.CLOCK,
        "title": "Simulated clock (internal)",
        "description": "Single partition; used only when the services run in simulation mode (`RAPPORT_CLOCK=simulated`: "
                       "tests, demos), read by assign + seek to its last record (no consumer group, no dead letters). "
                       "Not part of the partner contract.",
        "messages": {clock_type: {"$ref": f"#/components/messages/{clock_type}"}},
        "bindings": {"kafka": _channel_binding(topics.CLOCK, partitions=1)},
        "tags": [{"name": "internal"}],
    }
    operations[f"{CLOCK_DRIVER}.send.{topics.CLOCK}"] = _op(
        "send", CLOCK_DRIVER, topics.CLOCK, [clock_type], "the test or demo driver moves simulated time",
        summary="`python -m rapport_shared.clock tick --to <time> | --by <duration>`.")
    for svc, spec in specs.items():
        if topics.CLOCK in spec.kafka.reads:
            operations[f"{svc}.receive.{topics.CLOCK}"] = _op(
                "receive", svc, topics.CLOCK, [clock_type], f"{svc} follows simulated time")

    # Dead letters: one topic per (consumed topic, consumer group).
    messages["dead-letter"] = _dlq_message()
    for address, (topic, group) in sorted(dead_letter_topics(subs).items()):
        svc = next(n for n, s in specs.items() if s.group == group)
        channels[address] = {
            "address": address,
            "title": f"Dead letters of {group} from {topic} (internal)",
            "description": f"The records of `{topic}` that consumer group `{group}` could not apply. Inspect and redrive "
                           "with `rapport dlq list` / `rapport dlq redrive` (docs/replay.md).",
            "messages": {"dead-letter": {"$ref": "#/components/messages/dead-letter"}},
            "bindings": {"kafka": _channel_binding(address)},
            "tags": [{"name": "internal"}],
        }
        operations[f"{svc}.send.{address}"] = _op("send", svc, address, ["dead-letter"],
                                                  f"{svc} dead-letters what it cannot apply from {topic}")

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
                f"Schema URIs: every record's `ce_dataschema` is the absolute `$id` of its JSON Schema, "
                f"`{envelope.schema_base()}events/<type>.json` here; the base is a deployment setting "
                f"(`{envelope.SCHEMA_BASE_ENV}`, default `{envelope.DEFAULT_SCHEMA_BASE}`): the schemas are the files "
                "of `docs/events/schemas/` served at that base.\n\n"
                "Generated by `uv run python -m rapport_tools.docs` from the contract models and the services' "
                "handler registries; do not edit."),
            "tags": [
                {"name": "partner", "description": "Shared topics: pseudonymous ids and coded facts only; partners may read them."},
                {"name": "private", "description": "Access-restricted and encrypted; never partner-visible."},
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
