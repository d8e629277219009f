"""OpenTelemetry tracing: one trace from the HTTP edge across the outbox, Kafka, the consumers and
the notifier's sender (docs/observability.md, "Tracing").

Off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``); the rest is the
standard ``OTEL_*`` variables, read by the SDK (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_BSP_SCHEDULE_DELAY``, ...); ``OTEL_SERVICE_NAME`` defaults to ``rapport-<svc>``. Off, every
helper here returns at its first line: no provider, no exporter, no middleware.

The W3C context travels in the event's ``traceparent`` (CloudEvents distributed-tracing
extension, a Kafka header in the binary mode): the outbox stores the context current when the
event is emitted, the relay's publish and each consumed record are spans continuing it.
Span attributes carry ids only (event type and id, topic, partition, offset) — never event data.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_propagator = TraceContextTextMapPropagator()
_provider: "TracerProvider | None" = None
_tracer: trace.Tracer = trace.NoOpTracer()
# Last contexts of consumed events by event id: the notifier's sender, in the same process, continues
# the trace of the event that caused a delivery (its row keeps only the cause's id). Bounded; a
# restart between the two loses the link, never the delivery.
_RECENT_MAX = 10_000
_recent: "OrderedDict[str, str]" = OrderedDict()


def enabled() -> bool:
    return _provider is not None


def setup(service_name: str, exporter: "SpanExporter | None" = None) -> bool:
    """Start tracing for this process if ``OTEL_TRACES_EXPORTER`` asks for it (or ``exporter`` is
    given, for tests). Idempotent; returns whether tracing is on."""
    global _provider, _tracer
    if _provider is not None:
        return True
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter is None and kind in ("", "none"):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"rapport-{service_name}"})
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_NoOrphanQueries()))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_exporter(kind)))
    trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer("rapport")
    try:  # SQL statements only (parameters are not captured: they may hold health data)
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        AsyncPGInstrumentor().instrument(tracer_provider=provider)
    except Exception:  # pragma: no cover - an instrumentation that cannot load must not stop the service
        pass
    return True


def _exporter(kind: str) -> "SpanExporter":
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: rapport supports otlp, console or none")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT


class _NoOrphanQueries:
    """Root sampler: a database query outside any request or record (the relay's and timers' polls,
    every second) would be a trace of its own, of no use; everything else starts a trace."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult
        if attributes and ("db.system" in attributes or "db.system.name" in attributes):
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "NoOrphanQueries"


def shutdown() -> None:
    """Flush and stop the exporter (the service is stopping)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
        _provider, _tracer = None, trace.NoOpTracer()
        try:
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
            AsyncPGInstrumentor().uninstrument()
        except Exception:  # pragma: no cover
            pass
    _recent.clear()


def instrument_app(app: Any) -> None:
    """Server spans for the HTTP app, continuing an incoming ``traceparent``."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    # Health and metrics are polled: not traced. No receive/send sub-spans.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls="healthz,readyz,metrics",
                                       exclude_spans=["receive", "send"], server_request_hook=_without_query)


def _without_query(span: Any, scope: dict) -> None:
    """The URL without its query string: a query may name a person (search filters)."""
    if span.is_recording():
        for key in ("http.url", "url.full"):
            if isinstance(url := span.attributes.get(key), str) and "?" in url:
                span.set_attribute(key, url.split("?", 1)[0])
        if "url.query" in span.attributes:
            span.set_attribute("url.query", "")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (tracing off, or no span)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def _parent(traceparent: str | None) -> otel_context.Context | None:
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None


@contextmanager
def consume_span(record: Any, event: Any) -> Iterator[None]:
    """The span of one consumed record, child of its event's ``traceparent``; what the handler
    emits carries this span's context on (``Outbox.add``)."""
    if _provider is None:
        yield
        return
    attributes = {"messaging.system": "kafka", "messaging.operation.type": "process",
                  "messaging.destination.name": record.topic, "messaging.kafka.destination.partition": record.partition,
                  "messaging.kafka.offset": record.offset, "messaging.message.id": event.id,
                  "cloudevents.event_type": event.type, "cloudevents.event_id": event.id}
    with _tracer.start_as_current_span(f"process {event.type}", context=_parent(event.traceparent),
                                       kind=SpanKind.CONSUMER, attributes=attributes):
        if tp := current_traceparent():
            _recent[event.id] = tp
            while len(_recent) > _RECENT_MAX:
                _recent.popitem(last=False)
        yield


@contextmanager
def publish_span(topic: str, headers: dict[str, str]) -> Iterator[None]:
    """The relay's hand-over of one outbox row to the producer: a child of the context stored with
    the event (the record keeps that ``traceparent``: consumers continue the emitter's span)."""
    if _provider is None:
        yield
        return
    attributes = {"messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": topic,
                  "messaging.message.id": headers.get("ce_id", ""), "cloudevents.event_type": headers.get("ce_type", "")}
    with _tracer.start_as_current_span(f"send {topic}", context=_parent(headers.get("traceparent")),
                                       kind=SpanKind.PRODUCER, attributes=attributes):
        yield


@contextmanager
def delivery_span(notification_id: Any, cause_event_id: Any, kind: str, channel: str) -> Iterator[None]:
    """The notifier's delivery of one notification, continuing the trace of the event that caused
    it when this process consumed that event (ids and codes only: no address, no content)."""
    if _provider is None:
        yield
        return
    attributes = {"rapport.notification_id": str(notification_id), "rapport.cause_event_id": str(cause_event_id),
                  "rapport.notification.kind": kind, "rapport.notification.channel": channel}
    with _tracer.start_as_current_span("deliver notification", context=_parent(_recent.get(str(cause_event_id))),
                                       kind=SpanKind.PRODUCER, attributes=attributes):
        yield
