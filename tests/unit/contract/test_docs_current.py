"""The generated partner docs (AsyncAPI 3.0 document, HTML catalogue, published schema copies) are
committed and current, and the AsyncAPI document is complete and internally consistent."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone

import jsonschema
import pytest

from rapport_shared import envelope, topics
from rapport_shared.contracts import EVENT_MODELS
from rapport_tools.docs.__main__ import main, repo_root, stale_files
from rapport_tools.docs.asyncapi import build, discover_subscriptions

pytestmark = pytest.mark.unit

ROOT = repo_root()


@pytest.fixture(scope="module")
def doc() -> dict:
    return build()


def test_committed_docs_are_current():
    stale = stale_files(ROOT)
    assert not stale, "regenerate with `uv run python -m rapport_tools.docs` and commit:\n" + "\n".join(stale)


def test_the_committed_asyncapi_file_is_the_built_document(doc):
    assert json.loads((ROOT / "docs" / "asyncapi.json").read_text()) == doc


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    assert main(["--root", str(tmp_path)]) == 0  # writes a fresh tree
    assert main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "docs" / "events" / "index.html").write_text("old")
    (tmp_path / "docs" / "events" / "schemas" / "events" / "rapport.gone.v1.json").write_text("{}")
    assert main(["--root", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/events/index.html" in err and "rapport.gone.v1.json (no longer generated)" in err


def _refs(node, out):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            out.append(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def _pointer(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_event_type_is_a_message_on_its_topic(doc):
    assert doc["asyncapi"] == "3.0.0"
    for t, model in EVENT_MODELS.items():
        channel = doc["channels"][model.topic]
        assert channel["address"] == model.topic
        assert channel["messages"][t] == {"$ref": f"#/components/messages/{t}"}
        msg = doc["components"]["messages"][t]
        assert msg["headers"]["properties"]["ce_type"]["const"] == t
        assert msg["headers"]["properties"]["ce_dataschema"]["const"] == envelope.schema_uri(t)
        assert msg["bindings"]["kafka"]["key"]["format"] == "uuid"
    for topic in topics.SHARED_TOPICS:
        send = [o for o in doc["operations"].values() if o["action"] == "send" and o["channel"]["$ref"] == f"#/channels/{topic}"]
        assert len(send) == 1, topic
    assert topics.PRIVATE_CONTACTS in doc["channels"]


def test_every_reference_resolves_and_operations_use_their_channels_messages(doc):
    for ref in _refs(doc, []):
        _pointer(doc, ref)
    for oid, op in doc["operations"].items():
        assert op["action"] in ("send", "receive")
        for m in op.get("messages", []):
            assert m["$ref"].startswith(op["channel"]["$ref"] + "/messages/"), oid
    key = re.compile(r"^[a-zA-Z0-9.\-_]+$")
    for section in doc["components"].values():
        assert all(key.match(k) for k in section)


def test_receive_operations_match_the_services_consumers(doc):
    subs = discover_subscriptions()
    assert "rapport.intake.completed.v1" in subs["scheduler"]["rapport.intake"]
    for svc, per_topic in subs.items():
        for topic, types in per_topic.items():
            op = doc["operations"][f"{svc}.receive.{topic}"]
            assert op["bindings"]["kafka"]["groupId"]["enum"] == [f"rapport-{svc}"]
            assert [m["$ref"].rsplit("/", 1)[-1] for m in op["messages"]] == types


def test_payload_and_header_schemas_validate_a_real_record(doc):
    from rapport_shared.contracts import IntakeCompletedV1

    data = IntakeCompletedV1(
        episode_id=uuid.uuid4(), person_id="P-000123", target_condition="depression", template_id="ipt-standard",
        focus={"primary": "grief"}, clinician_id="clin-7",
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at=datetime(2026, 11, 1, tzinfo=timezone.utc), completed_at=datetime(2026, 11, 2, tzinfo=timezone.utc))
    event = envelope.new_event(type=IntakeCompletedV1.event_type, source="/rapport/intake", subject=str(data.episode_id),
                               data=data, time=datetime.now(timezone.utc), correlation_id=str(uuid.uuid4()))
    record = envelope.encode(event)
    t = IntakeCompletedV1.event_type
    payload_validator = jsonschema.Draft7Validator({"$ref": f"#/components/schemas/{t}", "components": doc["components"]})
    payload_validator.validate(json.loads(record.value))
    with pytest.raises(jsonschema.ValidationError):
        payload_validator.validate({**json.loads(record.value), "focus": {"primary": "loneliness"}})
    headers = doc["components"]["messages"][t]["headers"]
    jsonschema.Draft7Validator(headers, format_checker=jsonschema.FormatChecker()).validate(record.headers)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**record.headers, "ce_type": "rapport.other.v1"}, headers)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(schema)


def test_faststream_reads_the_document(doc):
    # FastStream's own AsyncAPI 3.0 models as a second reader (they wrongly require server.pathname).
    from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema

    patched = {**doc, "servers": {k: {"pathname": "", **v} for k, v in doc["servers"].items()}}
    parsed = ApplicationSchema.model_validate(patched)
    assert set(parsed.channels) == set(doc["channels"])


def test_the_html_lists_every_type_with_its_fields():
    html = (ROOT / "docs" / "events" / "index.html").read_text()
    for t, model in EVENT_MODELS.items():
        assert f'id="msg-{t}"' in html and f'href="schemas/events/{t}.json"' in html
        for name in model.model_fields:
            assert f"<code>{name}</code>" in html


# -- what the services really do (#14: from the handler registries, not from scanning source) ----

def _services_of(doc, action, channel):
    return sorted(t["name"].split(":", 1)[1] for o in doc["operations"].values()
                  if o["action"] == action and o["channel"]["$ref"] == f"#/channels/{channel}"
                  for t in o["tags"] if t["name"].startswith("service:"))


def test_each_service_receives_exactly_what_its_handler_registry_handles(doc):
    from rapport_tools import services

    for name, spec in services.registered().items():
        handled = {m.event_type for m in spec.load("handlers").event_models}
        received = {m["$ref"].rsplit("/", 1)[-1] for oid, op in doc["operations"].items()
                    if oid.startswith(f"{name}.receive.") and op["channel"]["$ref"].rsplit("/", 1)[-1] in topics.SHARED_TOPICS
                    for m in op["messages"]}
        assert received == handled & set(EVENT_MODELS), name
        # and every topic it consumes is one it may read (its ACLs)
        assert {EVENT_MODELS[t].topic for t in handled if t in EVENT_MODELS} <= set(spec.kafka.reads), name


def test_the_notifier_subscribes_to_every_shared_topic(doc):
    for topic in topics.SHARED_TOPICS:
        assert "notifier" in _services_of(doc, "receive", topic), topic
    assert _services_of(doc, "receive", topics.PRIVATE_CONTACTS) == ["notifier"]
    assert _services_of(doc, "receive", topics.PRIVATE_PERSON_KEYS) == ["notifier"]


def test_every_dead_letter_topic_of_every_group_is_a_channel_the_acls_grant(doc):
    from rapport_tools import acl, services

    from_acls = {d for name in services.registered() for d in acl.service_dlq_topics(name)}
    channels = {c["address"] for c in doc["channels"].values() if ".dlq." in c["address"]}
    assert channels == from_acls and channels
    for address in channels:
        topic, group = address.split(".dlq.")
        assert topics.dlq_topic(topic, group) == address
        [sender] = _services_of(doc, "send", address)
        assert f"rapport-{sender}" == group


def test_the_clock_topic_has_a_published_schema_and_its_readers(doc):
    from rapport_shared.clock import TICK_TYPE
    from rapport_tools import services

    msg = doc["components"]["messages"][TICK_TYPE]
    assert doc["channels"][topics.CLOCK]["messages"] == {TICK_TYPE: {"$ref": f"#/components/messages/{TICK_TYPE}"}}
    schema = json.loads((ROOT / "docs" / msg["x-json-schema"]).read_text())
    assert msg["headers"]["properties"]["ce_dataschema"]["const"] == schema["$id"] == msg["x-dataschema"]
    assert doc["components"]["schemas"][TICK_TYPE]["required"] == ["now"]
    readers = sorted(n for n, s in services.registered().items() if topics.CLOCK in s.kafka.reads)
    assert readers and _services_of(doc, "receive", topics.CLOCK) == readers
    assert _services_of(doc, "send", topics.CLOCK) == ["clock-driver"]


def test_private_topics_are_operations_with_opaque_payloads(doc):
    from rapport_shared.private_contacts import ContactRecordV1

    contact_fields = set(ContactRecordV1.model_fields) - {"person_id"}  # the pseudonymous key is no contact detail
    for topic in (topics.PRIVATE_CONTACTS, topics.PRIVATE_PERSON_KEYS, topics.ERASURES):
        channel = doc["channels"][topic]
        assert _services_of(doc, "send", topic) == ["intake"]
        assert _services_of(doc, "receive", topic)
        for ref in channel["messages"].values():
            msg = _pointer(doc, ref["$ref"])
            assert not contact_fields & set(msg["payload"].get("properties", {})), msg["name"]
            if topic != topics.ERASURES:
                assert msg["payload"]["format"] == "binary" and msg["payload"]["x-encrypted"] is True
    # the contact record's model is described nowhere in the document
    text = json.dumps(doc)
    assert "ContactRecordV1" not in text
    assert not any(f'"{f}":' in text for f in ("email", "phone", "channel_consent", "quiet_hours", "preferred_channel"))


def test_every_message_example_is_a_valid_record(doc):
    for mid, msg in doc["components"]["messages"].items():
        if mid not in EVENT_MODELS and mid != "rapport.clock.advanced.v1":
            continue
        [example] = msg["examples"]
        payload = jsonschema.Draft7Validator({"$ref": f"#/components/schemas/{mid}", "components": doc["components"]},
                                             format_checker=jsonschema.FormatChecker())
        payload.validate(example["payload"])
        jsonschema.Draft7Validator(msg["headers"], format_checker=jsonschema.FormatChecker()).validate(example["headers"])
        event = envelope.decode(json.dumps(example["payload"]).encode(), example["headers"])
        assert event.type == mid and event.dataschema == msg["x-dataschema"]
        assert json.loads((ROOT / "docs" / msg["x-json-schema"]).read_text())["examples"] == [example["payload"]]


def test_events_md_lists_every_event_type_once():
    text = (ROOT / "docs" / "events.md").read_text()
    rows = re.findall(r"^\| `(rapport\.[a-z.]+)` \| `(rapport\.[a-z_.]+\.v\d+)` \|", text, re.M)
    partner = [(topic, t) for topic, t in rows if t in EVENT_MODELS]
    assert sorted(t for _, t in partner) == sorted(EVENT_MODELS)
    assert all(EVENT_MODELS[t].topic == topic for topic, t in partner)


def test_each_service_sends_to_the_topics_its_runtime_produces(doc):
    """The runtime's ``produces`` (bootstrap: the topics its outbox relays to) is what the document
    says the service publishes; building the app touches neither Kafka nor Postgres."""
    from rapport_tools import services

    for name, spec in services.registered().items():
        runtime = spec.load("app")(spec.load("settings")()).state.runtime
        sends = {t for t in topics.SHARED_TOPICS if name in _services_of(doc, "send", t)}
        assert sends == set(runtime.produces), name
