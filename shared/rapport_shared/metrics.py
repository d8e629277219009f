"""Prometheus metrics shared by all services (served on ``/metrics``)."""

import asyncio
from typing import Any, Iterable

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "rapport_events_consumed_total", "Records handled by a consumer, by outcome", ["topic", "event_type", "outcome"]
)
HANDLER_SECONDS = Histogram("rapport_handler_seconds", "Time to apply one event's effect", ["event_type"])
DEAD_LETTERED = Counter("rapport_dead_lettered_total", "Records sent to a dead-letter topic", ["topic", "reason"])
OUTBOX_PUBLISHED = Counter("rapport_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("rapport_outbox_pending", "Outbox rows not yet published (at last relay pass)")
OUTBOX_PARKED = Gauge(
    "rapport_outbox_parked", "Outbox rows parked by the relay (refused by Kafka): `rapport outbox parked` lists them")
OUTBOX_WAITING = Gauge(
    "rapport_outbox_waiting", "Unsent outbox rows held behind a parked row of the same key (per-episode order)")
OUTBOX_PARKED_TOTAL = Counter(
    "rapport_outbox_rows_parked_total", "Outbox rows parked, by topic and why (permanent: refused as such; attempts: "
    "failed max_attempts passes)", ["topic", "reason"])
OUTBOX_EVENTS_REFUSED = Counter(
    "rapport_outbox_events_refused_total", "Events refused by Outbox.add as larger than max_event_bytes (nothing "
    "written)", ["event_type"])
HTTP_BODY_REFUSED = Counter("rapport_http_body_refused_total", "Requests refused with 413: body above the limit")
RELAY_LAG_SECONDS = Histogram(
    "rapport_outbox_lag_seconds", "Time from outbox insert to Kafka acknowledgement", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
)
HTTP_REQUESTS = Counter("rapport_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "rapport_http_request_duration_seconds", "Time from a request's arrival to its response's headers, by method, "
    "route template and status", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
# Read from each consumer's own fetch state when /metrics is scraped (http/app.py): no extra broker
# round trip, and a partition this process no longer owns disappears with the next scrape.
CONSUMER_LAG = Gauge(
    "rapport_consumer_lag", "Records on a partition this process consumes that it has not fetched yet (the "
    "partition's high watermark minus the consumer's position), by consumer group, topic and partition",
    ["group", "topic", "partition"])
TIMERS_FIRED = Counter("rapport_timers_fired_total", "Durable timers fired (their effect committed)", ["kind"])
TIMERS_PARKED = Gauge(
    "rapport_timers_parked", "Durable timers parked (their handler kept failing with an error that is not an outage): "
    "their effect will not happen until an operator retries them (`rapport timers parked` lists them)", ["kind"])
TIMERS_PARKED_TOTAL = Counter(
    "rapport_timers_parkings_total", "Times a durable timer was parked, by kind and why (attempts: the handler failed max_attempts "
    "times; no_handler: no handler for the kind)", ["kind", "reason"])
TIMERS_RETRIED = Counter(
    "rapport_timers_retried_total", "Timer firings that failed and will be tried again, by kind and cause (outage: "
    "Postgres/Kafka unreachable, retried until it is back and never counted against the timer; error: counted, "
    "parked after max_attempts)", ["kind", "cause"])


async def refresh_consumer_lag(subscribers: Iterable[Any]) -> None:
    """Set ``CONSUMER_LAG`` for the partitions the consumers of ``subscribers`` (``kafka.BatchSubscriber``:
    its ``group_id`` and aiokafka consumer) own now. Both numbers come from the consumer's fetch state,
    so records fetched and still being handled count as consumed (at most one batch), and a partition
    not fetched from yet has no value. A partition revoked meanwhile is skipped."""
    lags: dict[tuple[str, str, str], int] = {}
    for sub in subscribers:
        kc = getattr(sub, "_kc", None)
        if kc is None:  # no handlers, or not started
            continue
        for tp in kc.assignment():
            try:
                high = kc.highwater(tp)
                if high is None:
                    continue
                position = await asyncio.wait_for(kc.position(tp), 1.0)
            except Exception:  # noqa: BLE001 - reassigned or repositioning: the next scrape has it
                continue
            lags[(sub.group_id, tp.topic, str(tp.partition))] = max(0, high - position)
    CONSUMER_LAG.clear()
    for labels, lag in lags.items():
        CONSUMER_LAG.labels(*labels).set(lag)
