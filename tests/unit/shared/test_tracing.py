"""Trace context propagation (rapport_shared.tracing) with an in-memory exporter: HTTP edge →
outbox → relay publish → consumed record → emitted event → notifier delivery, one trace."""

from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rapport_shared import tracing
from rapport_shared.envelope import decode, encode, new_event
from rapport_shared.outbox import Outbox

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class FakeConn:
    """What Outbox.add touches: a transaction flag and two statements."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def is_in_transaction(self) -> bool:
        return True

    async def execute(self, sql: str, *args):
        if "INSERT" in sql:
            self.rows.append(args)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


@pytest.fixture
def spans(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    exporter = InMemorySpanExporter()
    assert tracing.setup("test", exporter=exporter)
    yield exporter
    tracing.shutdown()


def test_off_by_default_costs_nothing(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert not tracing.setup("test") and not tracing.enabled()
    assert tracing.current_traceparent() is None
    with tracing.consume_span(Record("t", 0, 1), SimpleNamespace(id="e", type="x", traceparent=INCOMING)):
        assert tracing.current_traceparent() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.setup("test")


def test_unknown_exporter_is_refused(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="zipkin"):
        tracing.setup("test")
    assert not tracing.enabled()


def test_http_edge_continues_an_incoming_traceparent(spans):
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict:
        return {"traceparent": tracing.current_traceparent()}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    tracing.instrument_app(app)
    client = TestClient(app)
    got = client.get("/x?person_id=P-77", headers={"traceparent": INCOMING}).json()["traceparent"]
    assert got.split("-")[1] == INCOMING.split("-")[1] and got.split("-")[2] != INCOMING.split("-")[2]
    client.get("/healthz")
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.context.trace_id == int(INCOMING.split("-")[1], 16)
    assert format(server.parent.span_id, "016x") == INCOMING.split("-")[2]
    assert not [k for k, v in server.attributes.items() if "P-77" in str(v)]  # no query string kept


async def test_context_crosses_outbox_relay_consumer_and_sender(spans):
    tracer = tracing._provider.get_tracer("test")
    data = _event_data()
    outbox = Outbox(source="/rapport/test", schema="test")
    with tracer.start_as_current_span("edge") as edge:
        first = await outbox.add(FakeConn(), data, time=NOW)
    trace_id = edge.get_span_context().trace_id
    assert first.traceparent.startswith(f"00-{trace_id:032x}-{edge.get_span_context().span_id:016x}-")

    # The relay's publish: a child of the stored context; the record keeps that traceparent.
    rec = encode(first)
    with tracing.publish_span(data.topic, rec.headers):
        pass
    assert rec.headers["traceparent"] == first.traceparent

    # A consumer: one span per record, child of the event's context; what it emits carries it on.
    consumed = decode(rec.value, list(rec.headers.items()))
    with tracing.consume_span(Record(data.topic, 3, 42), consumed):
        second = await outbox.add(FakeConn(), data, time=NOW, cause=consumed)
    # The sender (same process) continues from the consumed event.
    with tracing.delivery_span("n-1", consumed.id, "course_planned", "email"):
        pass

    by_name = {s.name: s for s in spans.get_finished_spans()}
    publish, process, deliver = by_name[f"send {data.topic}"], by_name[f"process {consumed.type}"], by_name["deliver notification"]
    assert {s.context.trace_id for s in (publish, process, deliver)} == {trace_id}
    assert publish.parent.span_id == process.parent.span_id == edge.get_span_context().span_id
    assert deliver.parent.span_id == process.context.span_id
    assert second.traceparent.split("-")[2] == f"{process.context.span_id:016x}"
    # ids only in the attributes: no event data
    assert dict(process.attributes) == {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": data.topic,
        "messaging.kafka.destination.partition": 3, "messaging.kafka.offset": 42, "messaging.message.id": consumed.id,
        "cloudevents.event_type": consumed.type, "cloudevents.event_id": consumed.id}


async def test_untraced_process_keeps_the_causes_traceparent(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    data = _event_data()
    cause = new_event(type=data.event_type, source="/x", subject="s", data=data, time=NOW, traceparent=INCOMING)
    event = await Outbox(source="/rapport/test", schema="test").add(FakeConn(), data, time=NOW, cause=cause)
    assert event.traceparent == INCOMING


def _event_data():
    return _Probe(episode_id="0b7e6a52-0000-4000-8000-000000000001")


from rapport_shared.contracts.base import EventData  # noqa: E402


class _Probe(EventData):
    """A throwaway event type (not catalogued): ids only."""

    event_type: ClassVar[str] = "rapport.test.probe.v1"
    topic: ClassVar[str] = "rapport.test"
    episode_id: str
