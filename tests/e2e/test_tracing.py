"""One trace across three services (issue #14, OpenTelemetry): the intake request that completes an
intake → the scheduler planning the course → the notifier delivering the clinician's notification.

The services run as processes exporting OTLP/HTTP to a loopback receiver (a tiny HTTP server
keeping the ``POST /v1/traces`` bodies, decoded with ``opentelemetry-proto``)."""

import gzip
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from rapport_testing.flows import run_intake
from rapport_testing.kafka import wait_for_records
from rapport_shared.topics import NOTIFICATIONS

pytestmark = pytest.mark.e2e

TRACED = ("intake", "scheduler", "outcomes", "notifier")


class Receiver:
    """Collects exported spans as (service.name, span) pairs."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    req = ExportTraceServiceRequest.FromString(body)
                    with receiver.lock:
                        for rs in req.resource_spans:
                            name = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
                            for ss in rs.scope_spans:
                                receiver.spans.extend((name, s) for s in ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def trace(self, trace_id: bytes) -> dict[str, list]:
        with self.lock:
            by_service = defaultdict(list)
            for service, span in self.spans:
                if span.trace_id == trace_id:
                    by_service[service].append(span)
            return dict(by_service)


@pytest.fixture
def traced_system(system):
    receiver = Receiver()
    receiver.thread.start()
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "200"}
    try:
        for name in TRACED:
            system.restart(name, env)
        yield system, receiver
    finally:
        for name in TRACED:  # the other tests get untraced services back
            system.restart(name)
        receiver.server.shutdown()


async def test_one_trace_from_intake_http_to_notifier_delivery(traced_system, kafka, tokens):
    system, receiver = traced_system
    done = run_intake(system["intake"].url, tokens.issue("ic-1", ["intake_clinician"]))
    episode = done["episode_id"]
    [delivered] = await wait_for_records(
        kafka.bootstrap, NOTIFICATIONS,
        lambda r: r.headers.get("ce_subject") == episode and r.headers.get("ce_type") == "rapport.notification.delivered.v1")
    # The delivered event carries the delivery span's context: its trace is the one to follow.
    traceparent = delivered.headers["traceparent"]
    trace_id = bytes.fromhex(traceparent.split("-")[1])

    def complete(spans) -> bool:  # every span's parent exported too (batches leave at their own pace)
        every = [s for ss in spans.values() for s in ss]
        ids = {s.span_id for s in every}
        return (spans.keys() >= {"rapport-intake", "rapport-scheduler", "rapport-notifier"}
                and any(s.name == "deliver notification" for s in spans["rapport-notifier"])
                and all(s.parent_span_id in ids for s in every if s.parent_span_id))

    deadline = time.monotonic() + 30
    while not complete(spans := receiver.trace(trace_id)) and time.monotonic() < deadline:
        time.sleep(0.3)
    names = {svc: {s.name for s in ss} for svc, ss in spans.items()}

    assert {"rapport-intake", "rapport-scheduler", "rapport-notifier"} <= names.keys(), names
    # intake: the HTTP request (server span) and the relay's publish of intake.completed
    kinds = {s.kind for s in spans["rapport-intake"]}
    assert 2 in kinds, names  # SPAN_KIND_SERVER: the trace starts at the HTTP edge
    assert "send rapport.intake" in names["rapport-intake"], names
    # scheduler: the consumed intake.completed (the plan is made there) and the publish of course.planned
    assert "process rapport.intake.completed.v1" in names["rapport-scheduler"], names
    assert "send rapport.course" in names["rapport-scheduler"], names
    # notifier: the consumed course.planned and the delivery
    assert "process rapport.course.planned.v1" in names["rapport-notifier"], names
    assert "deliver notification" in names["rapport-notifier"], names
    # one root: the intake request; every other span has its parent in the trace
    every = [s for ss in spans.values() for s in ss]
    ids = {s.span_id for s in every}
    roots = [s for s in every if not s.parent_span_id]
    assert [r.kind for r in roots] == [2], [(r.name, r.kind) for r in roots]
    assert all(s.parent_span_id in ids for s in every if s.parent_span_id)
    # ids only: no attribute value carries the intake's answers (spot check: no "phq" free text)
    for s in every:
        for a in s.attributes:
            assert "answers" not in a.key
