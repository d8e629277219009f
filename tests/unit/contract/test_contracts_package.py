"""rapport-contracts, the partner package: its catalogue is the services' catalogue, its schemas are
the published ones, its Kafka binding reads what Rapport writes (as does the CloudEvents SDK, the
way docs/partners.md shows), and its webhook check (standardwebhooks) accepts what the notifier
signs and nothing else."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

import rapport_contracts
import rapport_shared.contracts
from rapport_contracts import EVENT_MODELS, model_for, topic_of
from rapport_contracts.binding import decode_record, encode_event
from rapport_contracts.envelope import EnvelopeError
from rapport_contracts.internal import INTERNAL_MODELS
from rapport_contracts.schemas import json_schema, topics
from rapport_contracts.topics import SHARED_TOPICS
from rapport_contracts.webhooks import WebhookVerificationError, verify
from rapport_notifier.domain.rules import new_secret, sign
from rapport_tools.contracts.examples import example_data, example_record
from rapport_tools.contracts.export import SCHEMAS_ROOT, collection_of

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)


def test_the_services_use_the_same_models():
    assert rapport_shared.contracts.EVENT_MODELS is EVENT_MODELS
    assert rapport_shared.contracts.model_for("rapport.course.planned.v1") is rapport_contracts.CoursePlannedV1
    assert len(EVENT_MODELS) == 19 and model_for("rapport.future.thing.v1") is None
    assert {topic_of(t) for t in EVENT_MODELS} == set(SHARED_TOPICS) and topics() == {
        t: topic_of(t) for t in sorted(EVENT_MODELS)}


@pytest.mark.parametrize("event_type", [*sorted(EVENT_MODELS), *sorted(INTERNAL_MODELS)])
def test_the_generated_schema_is_the_published_one_but_its_example(event_type):
    published = json.loads((SCHEMAS_ROOT / collection_of(event_type) / f"{event_type}.json").read_text())
    generated = json_schema(event_type)
    if "examples" not in generated:  # the export adds one example built from the model
        published.pop("examples")
    assert generated == published


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_a_record_decodes_to_its_typed_event(event_type):
    model = EVENT_MODELS[event_type]
    data = model.model_validate(example_data(model))
    record = encode_event(data, source="/rapport/test", subject=str(data.episode_id), time=T0)
    event, typed = decode_record(record.value, record.headers, key=record.key)
    assert (event.type, typed) == (event_type, data)
    assert event.dataschema == json_schema(event_type)["$id"]


def test_decoding_names_what_is_wrong():
    record = example_record(rapport_contracts.course.SessionMissedV1, source="/rapport/scheduler")
    bad = json.dumps({**json.loads(record.value), "number": 0}).encode()
    with pytest.raises(EnvelopeError, match="value number: Input should be greater than or equal to 1"):
        decode_record(bad, record.headers)
    with pytest.raises(EnvelopeError, match="key: differs from ce_subject"):
        decode_record(record.value, record.headers, key=b"other")
    with pytest.raises(EnvelopeError, match="header ce_id: must be a UUID"):
        decode_record(record.value, {**record.headers, "ce_id": "nope"})
    event, typed = decode_record(b"{}", {**record.headers, "ce_type": "rapport.future.thing.v1"})
    assert typed is None and event.type == "rapport.future.thing.v1"  # skipped, not an error


def test_the_cloudevents_sdk_reads_a_rapport_record_as_the_partner_guide_shows():
    record = example_record(rapport_contracts.CoursePlannedV1, source="/rapport/scheduler")
    # docs/partners.md, "Decoding with the CloudEvents SDK"
    message = KafkaMessage(headers={k: v.encode() for k, v in record.headers.items()}, key=record.key,
                           value=record.value)
    event = from_binary(message, JSONFormat())
    data = model_for(event.get_type()).model_validate(event.get_data())
    assert event.get_subject() == str(data.episode_id) == record.key.decode()
    assert event.get_dataschema() == json_schema("rapport.course.planned.v1")["$id"]
    assert event.get_time() == datetime.fromisoformat(record.headers["ce_time"].replace("Z", "+00:00"))


def test_webhook_verification_accepts_what_the_notifier_signs_and_nothing_else():
    secret, body, now = new_secret(), b'{"type":"rapport.alert.raised.v1"}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
               "webhook-signature": sign(secret, "msg_1", now, body)}
    assert verify(secret, headers, body) == {"type": "rapport.alert.raised.v1"}
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, body.replace(b"raised", b"resolved"))
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), headers, body)
    stale = now - 3600
    with pytest.raises(WebhookVerificationError):  # a replay an hour later
        verify(secret, {**headers, "webhook-timestamp": str(stale),
                        "webhook-signature": sign(secret, "msg_1", stale, body)}, body)
