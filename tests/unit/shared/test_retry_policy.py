"""The shared retry policy (rapport_shared.retry) and how EventConsumer uses it, with a fake pool:
outages retry until the infrastructure is back, everything else is bounded."""

import asyncio
import uuid
from datetime import datetime, timezone

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NodeNotReadyError

from rapport_shared import envelope
from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.outbox import Outbox
from rapport_shared.retry import InfrastructureUnavailable, RetryPolicy, is_infrastructure_error

pytestmark = pytest.mark.unit


class Conn:
    def __init__(self, closed=False):
        self.closed = closed

    def is_closed(self):
        return self.closed

    def is_in_transaction(self):
        return True

    def transaction(self):
        conn = self

        class Tx:
            async def __aenter__(self):
                return conn

            async def __aexit__(self, *exc):
                return False

        return Tx()

    async def fetchval(self, *args):
        return True  # inbox.claim: first time

    async def execute(self, *args):
        return "OK"


class Pool:
    """acquire() fails with the queued errors first, then hands out healthy connections."""

    def __init__(self, acquire_errors=()):
        self.acquire_errors = list(acquire_errors)
        self.acquired = 0

    async def acquire(self):
        self.acquired += 1
        if self.acquire_errors:
            raise self.acquire_errors.pop(0)
        return Conn()

    async def release(self, conn):
        pass


@pytest.mark.parametrize("exc,conn,infra", [
    (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), Conn(), True),
    (asyncpg.PostgresConnectionError("08006"), Conn(), True),
    (asyncpg.exceptions.CannotConnectNowError("starting up"), Conn(), True),
    (asyncpg.exceptions.AdminShutdownError("terminating"), Conn(), True),
    (asyncpg.exceptions.TooManyConnectionsError("53300"), Conn(), True),
    (KafkaConnectionError("broker down"), None, True),
    (NodeNotReadyError("not ready"), None, True),
    (InfrastructureUnavailable(ConnectionRefusedError()), None, True),
    (OSError("handler's own file"), Conn(), False),
    (ConnectionRefusedError("handler's own HTTP call"), Conn(), False),
    (TimeoutError("handler's own wait_for"), Conn(), False),
    (asyncio.TimeoutError(), None, False),
    (asyncpg.InterfaceError("another operation is in progress"), Conn(), False),
    (asyncpg.exceptions.UniqueViolationError("dup"), Conn(), False),
    (asyncpg.exceptions.QueryCanceledError("statement timeout"), Conn(), False),
    (MessageSizeTooLargeError(), None, False),
    (ValueError("bug"), None, False),
    (OSError("socket reset"), Conn(closed=True), True),  # the connection is gone: an outage
])
def test_what_counts_as_infrastructure(exc, conn, infra):
    assert is_infrastructure_error(exc, conn) is infra


def test_an_error_raised_while_handling_a_lost_connection_is_infrastructure():
    try:
        try:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle of operation")
        except Exception:
            raise asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    except Exception as exc:
        assert is_infrastructure_error(exc)


def test_backoff_is_jittered_exponential_and_capped():
    policy = RetryPolicy(initial_s=0.1, max_s=1.0)
    runs = [[round(d, 6) for d, _ in zip(policy.delays(), range(8))] for _ in range(5)]
    for delays in runs:
        assert all(0.1 <= d <= 1.0 for d in delays)
        assert delays[-1] == 1.0 and 0.1 <= delays[0] <= 0.2
    assert len({tuple(r[:4]) for r in runs}) > 1  # jitter: not every consumer waits the same


def record(data):
    ev = envelope.new_event(type=PhaseChangedV1.event_type, source="/rapport/test", subject=str(data["episode_id"]),
                            data=data, time=datetime.now(timezone.utc))
    rec = envelope.encode(ev)

    class Rec:
        topic, partition, offset, timestamp = "rapport.course", 0, 5, 0
        key, value = rec.key, rec.value
        headers = [(k, v.encode()) for k, v in rec.headers.items()]

    return ev, Rec()


def valid_data():
    return {"episode_id": str(uuid.uuid4()), "course_id": str(uuid.uuid4()), "from_phase": "initial", "to_phase": "middle",
            "effective_from_session": 4, "reason": "checklist_complete", "changed_at": "2026-11-26T10:00:00Z"}


def consumer_with(pool, dead, max_attempts=2):
    async def dead_letter(topic, rec):
        dead.append((topic, rec))

    return EventConsumer(pool=pool, group_id="g", dead_letter=dead_letter, outbox=Outbox("/rapport/test", "t"),
                         max_attempts=max_attempts, backoff_s=0.001, backoff_max_s=0.002)


async def test_postgres_down_retries_until_it_is_back_however_long():
    outage = [ConnectionRefusedError(111, "refused"), OSError("no route"), asyncio.TimeoutError(),
              asyncpg.exceptions.CannotConnectNowError("starting up")] * 3  # 12 failures, budget is 2
    pool, dead, applied = Pool(outage), [], []
    consumer = consumer_with(pool, dead)

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        applied.append(event.id)

    ev, rec = record(valid_data())
    assert (await consumer.process(rec)).status == "processed"
    assert pool.acquired == 13 and applied == [ev.id] and dead == []


async def test_a_lost_connection_during_the_handler_retries_without_counting():
    pool, dead, calls = Pool(), [], []
    consumer = consumer_with(pool, dead)

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        if len(calls) <= 5:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    _, rec = record(valid_data())
    assert (await consumer.process(rec)).status == "processed" and len(calls) == 6 and dead == []


@pytest.mark.parametrize("exc", [OSError("x"), TimeoutError("x"), asyncpg.InterfaceError("x"), ConnectionResetError("x")])
async def test_handler_errors_that_look_like_io_are_bounded_then_dead_lettered(exc):
    pool, dead, calls = Pool(), [], []
    consumer = consumer_with(pool, dead, max_attempts=4)

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        calls.append(1)
        raise exc

    _, rec = record(valid_data())
    assert (await consumer.process(rec)).status == "dead_lettered"
    assert len(calls) == 4
    [(_, dl)] = dead
    assert dl.headers["dlq_reason"] == "handler" and dl.headers["dlq_attempts"] == "4"


async def test_dead_letter_publish_retries_then_drops_the_value_when_too_large():
    pool, sent, tries = Pool(), [], []

    async def dead_letter(topic, rec):
        tries.append(rec)
        if len(tries) == 1:
            raise KafkaConnectionError("down")
        if rec.value:
            raise MessageSizeTooLargeError()
        sent.append(rec)

    consumer = EventConsumer(pool=pool, group_id="g", dead_letter=dead_letter, outbox=Outbox("/rapport/test", "t"),
                             backoff_s=0.001, backoff_max_s=0.002)
    _, rec = record(valid_data())
    rec.value = b"[" * 10_000
    assert (await consumer.process(rec)).status == "dead_lettered"
    [dl] = sent
    assert dl.value == b"" and dl.headers["dlq_value_omitted"] == "true" and dl.headers["dlq_reason"] == "envelope"
    assert dl.headers["dlq_original_offset"] == "5"


async def test_cancellation_is_not_swallowed():
    pool, dead = Pool(), []
    consumer = consumer_with(pool, dead)

    @consumer.on(PhaseChangedV1)
    async def apply(uow, event, data):
        raise asyncio.CancelledError()

    _, rec = record(valid_data())
    with pytest.raises(asyncio.CancelledError):
        await consumer.process(rec)
    assert dead == []
