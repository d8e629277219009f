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
