"""Absolute schema URIs (``$id`` = ``ce_dataschema``, a documented, configurable base), one example per
message built from its model, and the compatibility check treating a moved ``$id`` and new examples
as safe."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import jsonschema
import pytest

from rapport_shared import clock, envelope
from rapport_shared.contracts import EVENT_MODELS, PhaseChangedV1
from rapport_shared.contracts.internal import INTERNAL_MODELS, ClockAdvancedV1
from rapport_tools.contracts.compat import BREAKING, SAFE, check, compare_schemas
from rapport_tools.contracts.examples import example_data, example_record
from rapport_tools.contracts.export import SCHEMAS_ROOT, published_files, render

pytestmark = pytest.mark.unit

ALL_TYPES = [*sorted(EVENT_MODELS), *sorted(INTERNAL_MODELS)]
T0 = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)


def _validator(schema: dict) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


# -- URIs ---------------------------------------------------------------------------------------

def test_the_default_base_is_absolute_and_documented():
    parts = urlsplit(envelope.DEFAULT_SCHEMA_BASE)
    assert parts.scheme == "https" and parts.netloc.endswith(".example") and envelope.DEFAULT_SCHEMA_BASE.endswith("/")
    partners = (SCHEMAS_ROOT.parents[2] / "docs" / "partners.md").read_text()
    assert envelope.SCHEMA_BASE_ENV in partners and envelope.DEFAULT_SCHEMA_BASE in partners


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_published_schema_has_an_absolute_id_naming_its_file(event_type):
    schema = json.loads(render(event_type))
    uri = schema["$id"]
    assert urlsplit(uri).scheme == "https" and uri.startswith(envelope.schema_base())
    # <base><collection>/<type>.json is the file docs/events/schemas/<collection>/<type>.json
    assert (SCHEMAS_ROOT / uri.removeprefix(envelope.schema_base())) in published_files()


def test_records_carry_the_schema_id_as_ce_dataschema():
    data = PhaseChangedV1(episode_id=uuid.uuid4(), course_id=uuid.uuid4(), from_phase="initial", to_phase="middle",
                          effective_from_session=4, reason="checklist_complete", changed_at=T0)
    rec = envelope.encode(envelope.new_event(type=data.event_type, source="/rapport/scheduler",
                                             subject=str(data.episode_id), data=data, time=T0))
    assert rec.headers["ce_dataschema"] == json.loads(render(data.event_type))["$id"]
    assert rec.headers["ce_dataschema"] == "https://schemas.rapport.example/events/rapport.course.phase_changed.v1.json"


def test_the_base_is_a_setting(monkeypatch):
    monkeypatch.setenv(envelope.SCHEMA_BASE_ENV, "https://schemas.clinic.test/rapport")
    assert envelope.schema_uri("rapport.x.v1") == "https://schemas.clinic.test/rapport/events/rapport.x.v1.json"
    assert json.loads(render("rapport.course.planned.v1"))["$id"].startswith("https://schemas.clinic.test/rapport/events/")


@pytest.mark.parametrize("bad", ["/schemas/", "schemas.rapport.example", "ftp://x/", "https://x/?q=1"])
def test_a_base_that_is_no_absolute_http_uri_stops_the_process_at_start(bad):
    proc = subprocess.run([sys.executable, "-c", "import rapport_shared.envelope"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", envelope.SCHEMA_BASE_ENV: bad}, timeout=60)
    assert proc.returncode != 0 and envelope.SCHEMA_BASE_ENV in proc.stderr


@pytest.mark.parametrize("old_id", ["/schemas/events/rapport.x.v1.json", "https://old.example/events/rapport.x.v1.json"])
def test_consumers_read_records_whatever_their_dataschema(old_id):
    """Records written before the URIs were absolute (a path) still decode: the envelope keeps the
    header as it is and selects nothing by it."""
    rec = example_record(EVENT_MODELS["rapport.course.planned.v1"], source="/rapport/scheduler")
    headers = [(k, (old_id if k == "ce_dataschema" else v).encode()) for k, v in rec.headers.items()]
    event = envelope.decode(rec.value, headers)
    assert event.dataschema == old_id and event.type == "rapport.course.planned.v1"
    EVENT_MODELS[event.type].model_validate(event.data)


def test_clock_ticks_name_their_published_schema(monkeypatch):
    sent = {}

    class Producer:
        def __init__(self, **kw): ...
        async def start(self): ...
        async def stop(self): ...
        async def send_and_wait(self, topic, value, key, headers):
            sent.update(topic=topic, value=value, key=key, headers=dict(headers))

    async def no_topics(*a, **kw): ...

    import asyncio

    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Producer)
    monkeypatch.setattr(clock, "ensure_topics", no_topics)
    asyncio.run(clock.publish_tick("localhost:9", T0))
    schema = json.loads(render(clock.TICK_TYPE))
    assert sent["headers"]["ce_dataschema"].decode() == schema["$id"]
    assert schema["$id"].endswith("/internal/rapport.clock.advanced.v1.json") and schema["x-kafka-topic"] == sent["topic"]
    _validator(schema).validate(json.loads(sent["value"]))
    assert json.loads(sent["value"]) == {"now": "2026-11-26T09:30:00Z"} and sent["key"] == b"clock"
    assert clock._parse_tick(sent["value"]) == T0  # what the services read back


def test_the_tick_model_writes_what_the_followers_read():
    for t in (T0, T0.replace(microsecond=123456), T0.astimezone(timezone(timedelta(hours=2)))):
        value = json.dumps(ClockAdvancedV1(now=t).model_dump(mode="json")).encode()
        assert json.loads(value)["now"] == envelope.format_time(t) and clock._parse_tick(value) == t


# -- examples -----------------------------------------------------------------------------------

@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_schema_holds_an_example_its_model_and_schema_accept(event_type):
    schema = json.loads(render(event_type))
    [example] = schema["examples"]
    _validator(schema).validate(example)
    model = EVENT_MODELS.get(event_type) or INTERNAL_MODELS[event_type]
    assert model.model_validate(example).model_dump(mode="json") == example


def test_examples_are_deterministic_and_keyed_like_real_records():
    model = EVENT_MODELS["rapport.intake.completed.v1"]
    assert example_data(model) == example_data(model)
    rec = example_record(model, source="/rapport/intake")
    data = json.loads(rec.value)
    assert rec.key.decode() == rec.headers["ce_subject"] == data["episode_id"]
    assert rec.headers["ce_dataschema"] == envelope.schema_uri(model.event_type)
    envelope.decode(rec.value, rec.headers)  # a valid Rapport CloudEvent


def test_a_model_may_declare_its_own_example():
    from pydantic import BaseModel, ConfigDict

    class Custom(BaseModel):
        model_config = ConfigDict(json_schema_extra={"examples": [{"code": "given"}]})
        code: str

    assert example_data(Custom, "rapport.custom.v1") == {"code": "given"}


def test_a_field_no_example_can_be_derived_for_is_named():
    from pydantic import BaseModel, Field

    from rapport_tools.contracts.examples import ExampleError

    class Odd(BaseModel):
        serial: str = Field(pattern=r"^[0-9]{4}-[A-Z]{3}$")

    with pytest.raises(ExampleError, match="serial"):
        example_data(Odd, "rapport.odd.v1")

    class Given(BaseModel):
        serial: str = Field(pattern=r"^[0-9]{4}-[A-Z]{3}$", examples=["2026-ABC"])

    assert example_data(Given, "rapport.odd.v1") == {"serial": "2026-ABC"}


def test_a_type_without_a_description_fails_the_catalogue():
    from rapport_tools.docs.catalogue import UndescribedType, describe

    with pytest.raises(UndescribedType, match="docstring"):
        describe("rapport.new.v1", {"name": "rapport.new.v1", "summary": "rapport.new.v1"})


# -- compatibility ------------------------------------------------------------------------------

def test_a_moved_id_and_new_examples_are_safe_changes():
    new = json.loads(render("rapport.course.planned.v1"))
    old = {**new, "$id": "/schemas/events/rapport.course.planned.v1.json"}
    old.pop("examples")
    changes = compare_schemas(old, new, "rapport.course.planned.v1")
    assert [(c.level, c.kind) for c in changes] == [(SAFE, "schema_uri_changed")]
    assert "/schemas/events/" in changes[0].message and new["$id"] in changes[0].message


def test_the_real_catalogue_has_no_breaking_change_against_the_baseline():
    report = check()
    assert not report.breaking, "\n".join(map(str, report.breaking))
    assert all(c.level != BREAKING for c in report.changes)
