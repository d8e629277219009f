"""The operations behind the ``rapport`` command line, as plain async functions (tested directly).

Works against any Kafka: nothing here needs a Rapport service, a database or a consumer group of
its own. Record bytes are never re-encoded: ``dump`` writes key, value and header values exactly
(UTF-8 text when they are valid UTF-8, base64 otherwise) and ``load`` writes them back as they were.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from rapport_shared import topics as rapport_topics

DLQ_PATTERN = re.compile(r"^(?P<topic>.+)\.dlq\.(?P<group>.+)$")
REDRIVE_STATE_TOPIC = "rapport.tools.redrive"
PROTECTED_TOPICS = {*rapport_topics.SHARED_TOPICS, rapport_topics.PRIVATE_CONTACTS, rapport_topics.PRIVATE_PERSON_KEYS,
                    rapport_topics.ERASURES, REDRIVE_STATE_TOPIC}
INACTIVE_GROUP_STATES = {"Empty", "Dead", ""}

Progress = Callable[[int], None]  # called with the number of records just handled


# ------------------------------------------------------------------------------------ connection

@dataclass(frozen=True)
class Conn:
    """How to reach the cluster. SASL is optional (the secure profile, docs/partners.md)."""

    bootstrap: str = "localhost:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None  # SASL_SSL: the CA of the broker's certificate (the secure profile's TLS port)
    client_id: str = "rapport-cli"

    @classmethod
    def from_env(cls, bootstrap: str | None = None, **over: Any) -> "Conn":
        env = os.environ
        user = over.pop("sasl_username", None) or env.get("RAPPORT_KAFKA_SASL_USERNAME")
        return cls(
            bootstrap=bootstrap or env.get("RAPPORT_KAFKA_BOOTSTRAP", "localhost:9092"),
            security_protocol=over.pop("security_protocol", None) or env.get(
                "RAPPORT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT" if user else "PLAINTEXT"),
            sasl_mechanism=over.pop("sasl_mechanism", None) or env.get("RAPPORT_KAFKA_SASL_MECHANISM",
                                                                        "PLAIN" if user else None),  # as the services' KafkaSecurity and deploy/kafka's secure profile
            sasl_username=user,
            sasl_password=over.pop("sasl_password", None) or env.get("RAPPORT_KAFKA_SASL_PASSWORD"),
            ssl_cafile=over.pop("ssl_cafile", None) or env.get("RAPPORT_KAFKA_SSL_CAFILE"),
            **over,
        )

    def security(self) -> Any:
        """The same client security the services use (rapport_shared.settings.KafkaSecurity)."""
        from rapport_shared.settings import KafkaSecurity  # noqa: PLC0415

        return KafkaSecurity(security_protocol=self.security_protocol, sasl_mechanism=self.sasl_mechanism or "",
                             sasl_username=self.sasl_username or "", sasl_password=self.sasl_password or "",
                             ssl_cafile=self.ssl_cafile or "")

    def kwargs(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, **self.security().aiokafka_kwargs()}

    def admin(self) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(client_id=self.client_id, **self.kwargs())

    def consumer(self, **kw: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(client_id=self.client_id, enable_auto_commit=False, **self.kwargs(), **kw)

    def producer(self, **kw: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(client_id=self.client_id, acks="all", enable_idempotence=True, **self.kwargs(), **kw)


class ToolError(Exception):
    """A refusal or a user error, printed without a traceback."""


# ------------------------------------------------------------------------------------ encoding

def encode_bytes(raw: bytes | None) -> tuple[str | None, str]:
    """(text, encoding): UTF-8 text when the bytes are valid UTF-8, base64 otherwise; None stays None."""
    if raw is None:
        return None, "null"
    try:
        return raw.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def decode_bytes(text: str | None, encoding: str) -> bytes | None:
    if encoding == "null" or text is None:
        return None
    if encoding == "utf8":
        return text.encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    raise ValueError(f"unknown encoding {encoding!r}")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_to_json(r: Any) -> dict[str, Any]:
    """One dumped record. Everything needed to write it back byte for byte, plus readable extras."""
    key, key_enc = encode_bytes(r.key)
    value, value_enc = encode_bytes(r.value)
    headers = []
    for name, raw in r.headers or ():
        text, enc = encode_bytes(raw)
        headers.append({"name": name, "value": text, "encoding": enc})
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
            "timestamp_type": "LogAppendTime" if r.timestamp_type == 1 else "CreateTime", "time": _iso(r.timestamp),
            "key": key, "key_encoding": key_enc, "value": value, "value_encoding": value_enc, "headers": headers}


def json_to_record(d: dict[str, Any]) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    key = decode_bytes(d.get("key"), d.get("key_encoding", "utf8" if d.get("key") is not None else "null"))
    value = decode_bytes(d.get("value"), d.get("value_encoding", "utf8" if d.get("value") is not None else "null"))
    headers = [(h["name"], decode_bytes(h.get("value"), h.get("encoding", "utf8"))) for h in d.get("headers", [])]
    return key, value, headers


def headers_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}


# ------------------------------------------------------------------------------------ metadata

@dataclass
class PartitionInfo:
    partition: int
    begin: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.begin


@dataclass
class TopicInfo:
    name: str
    partitions: list[PartitionInfo]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)


@dataclass
class GroupInfo:
    group: str
    state: str
    members: int
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    lag: dict[TopicPartition, int] = field(default_factory=dict)


async def partitions_of(conn: Conn, names: Sequence[str]) -> dict[str, list[int]]:
    admin = conn.admin()
    await admin.start()
    try:
        described = await admin.describe_topics(list(names)) if names else []
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described if d["error_code"] == 0}


async def list_topic_names(conn: Conn, include_internal: bool = False) -> list[str]:
    admin = conn.admin()
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    return sorted(n for n in names if include_internal or not n.startswith("__"))


async def topic_infos(conn: Conn, names: Sequence[str]) -> list[TopicInfo]:
    parts = await partitions_of(conn, names)
    tps = [TopicPartition(t, p) for t in names for p in parts.get(t, [])]
    consumer = conn.consumer()
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps) if tps else {}
        end = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    return [TopicInfo(t, [PartitionInfo(p, begin[TopicPartition(t, p)], end[TopicPartition(t, p)]) for p in parts[t]])
            for t in names if t in parts]


async def describe_group(conn: Conn, group: str, admin: AIOKafkaAdminClient | None = None) -> tuple[str, int]:
    """(state, number of members) of a classic consumer group; ("Dead", 0) when it does not exist."""
    own = admin is None
    admin = admin or conn.admin()
    if own:
        await admin.start()
    try:
        [resp] = await admin.describe_consumer_groups([group])  # one at a time: aiokafka misparses several
        error_code, _, state, _, _, members = resp.groups[0]
        return (state or "Dead"), len(members)
    finally:
        if own:
            await admin.close()


async def end_offsets_of(conn: Conn, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = conn.consumer()
    await consumer.start()
    try:
        return await consumer.end_offsets(list(tps))
    finally:
        await consumer.stop()


async def topic_end_offsets(conn: Conn, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) → end offset, for every partition of ``topics``."""
    parts = await partitions_of(conn, topics)
    end = await end_offsets_of(conn, [TopicPartition(t, p) for t in topics for p in parts.get(t, [])])
    return {(tp.topic, tp.partition): off for tp, off in end.items()}


async def committed_offsets(conn: Conn, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) → the group's committed offset (partitions it never committed are absent)."""
    admin = conn.admin()
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): om.offset for tp, om in got.items() if om.offset >= 0}


async def groups(conn: Conn, only: Sequence[str] | None = None) -> list[GroupInfo]:
    admin = conn.admin()
    await admin.start()
    try:
        names = sorted({g for g, _ in await admin.list_consumer_groups()})
        if only:
            names = [g for g in names if g in only]
        out = []
        for g in names:
            state, members = await describe_group(conn, g, admin)
            offsets = {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(g)).items() if om.offset >= 0}
            out.append(GroupInfo(g, state, members, offsets))
    finally:
        await admin.close()
    tps = sorted({tp for gi in out for tp in gi.offsets})
    if tps:
        end = await end_offsets_of(conn, tps)
        for gi in out:
            gi.lag = {tp: max(0, end[tp] - off) for tp, off in gi.offsets.items()}
    return out


# ------------------------------------------------------------------------------------ reading

def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 (``2026-11-26T09:30:00Z``, a date alone = midnight UTC) or epoch milliseconds."""
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, timezone.utc)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass
class ReadPlan:
    start: dict[TopicPartition, int]
    stop: dict[TopicPartition, int] | None  # exclusive; None = follow

    @property
    def total(self) -> int | None:
        if self.stop is None:
            return None
        return sum(max(0, self.stop[tp] - self.start[tp]) for tp in self.start)


async def _offsets_at(consumer: AIOKafkaConsumer, tps: list[TopicPartition], when: datetime,
                      end: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}


async def plan_read(conn: Conn, topic_names: Sequence[str], *, since: datetime | None = None,
                    until: datetime | None = None, last: int | None = None, from_end: bool = False,
                    follow: bool = False, partitions: Sequence[int] | None = None,
                    from_offset: int | None = None, to_offset: int | None = None) -> ReadPlan:
    parts = await partitions_of(conn, topic_names)
    missing = [t for t in topic_names if t not in parts]
    if missing:
        raise ToolError(f"no such topic: {', '.join(missing)}")
    tps = [TopicPartition(t, p) for t in topic_names for p in parts[t] if partitions is None or p in partitions]
    consumer = conn.consumer()
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        if since is not None:
            start = await _offsets_at(consumer, tps, since, end)
        elif last is not None:
            start = {tp: max(begin[tp], end[tp] - last) for tp in tps}
        elif from_end:
            start = dict(end)
        elif from_offset is not None:
            start = {tp: min(max(begin[tp], from_offset), end[tp]) for tp in tps}
        else:
            start = dict(begin)
        stop = None
        if not follow:
            stop = await _offsets_at(consumer, tps, until, end) if until is not None else dict(end)
            if to_offset is not None:
                stop = {tp: min(stop[tp], to_offset) for tp in tps}
    finally:
        await consumer.stop()
    return ReadPlan(start, stop)


async def read(conn: Conn, plan: ReadPlan, *, isolation_level: str = "read_committed",
               progress: Progress | None = None) -> AsyncIterator[Any]:
    """Yield the planned records (per partition in offset order); follow forever when ``plan.stop`` is None.
    Aborted transactional records are skipped (read_committed), so a redrive that failed is invisible."""
    tps = [tp for tp in plan.start if plan.stop is None or plan.stop[tp] > plan.start[tp]]
    if not tps:
        return
    consumer = conn.consumer(isolation_level=isolation_level, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, plan.start[tp])
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp, records in batch.items():
                n = 0
                for r in records:
                    if plan.stop is not None and r.offset >= plan.stop[tp]:
                        break
                    n += 1
                    yield r
                if progress and n:
                    progress(n)
            if plan.stop is not None:
                for tp in list(remaining):
                    if await consumer.position(tp) >= plan.stop[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------ dump / load

async def dump(conn: Conn, plan: ReadPlan, write: Callable[[str], Any], *, progress: Progress | None = None,
               match: Callable[[Any], bool] | None = None) -> int:
    n = 0
    async for r in read(conn, plan, progress=progress):
        if match is None or match(r):
            write(json.dumps(record_to_json(r), ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def refuse_live_topic(topic: str, force: bool) -> None:
    if force:
        return
    if topic in PROTECTED_TOPICS or DLQ_PATTERN.match(topic) or topic.startswith("__"):
        raise ToolError(f"{topic} is a live topic; load into a sandbox topic (e.g. sandbox.{topic}) "
                        "or pass --force if you really mean it")


async def ensure_topic(conn: Conn, topic: str, partitions: int, config: dict[str, str] | None = None) -> bool:
    """Create ``topic`` if it does not exist. True when created."""
    admin = conn.admin()
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return False
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config or {})])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        await admin.close()


async def load(conn: Conn, records: Iterable[dict[str, Any]], topic: str, *, keep_partitions: bool = False,
               keep_timestamps: bool = True, progress: Progress | None = None, batch: int = 500) -> int:
    """Produce dumped records into ``topic``: key, value and headers byte for byte, in file order
    (idempotent producer: order per partition holds across retries). Partition = by key (the same
    murmur2 partitioner as the services, so the same partition for the same partition count), or
    the dumped partition number with ``keep_partitions``."""
    producer = conn.producer()
    await producer.start()
    n = 0
    try:
        pending = []
        for d in records:
            key, value, headers = json_to_record(d)
            pending.append(await producer.send(
                topic, value=value, key=key, headers=headers,
                partition=d["partition"] if keep_partitions else None,
                timestamp_ms=d.get("timestamp") if keep_timestamps else None))
            n += 1
            if len(pending) >= batch:
                for f in pending:
                    await f
                if progress:
                    progress(len(pending))
                pending = []
        for f in pending:
            await f
        if progress and pending:
            progress(len(pending))
    finally:
        await producer.stop()
    return n


# ------------------------------------------------------------------------------------ groups reset

@dataclass
class ResetRow:
    tp: TopicPartition
    current: int | None
    target: int
    begin: int
    end: int

    @property
    def lag_after(self) -> int:
        return self.end - self.target


@dataclass
class ResetPlan:
    group: str
    state: str
    members: int
    rows: list[ResetRow]

    @property
    def active(self) -> bool:
        return self.members > 0 or self.state not in INACTIVE_GROUP_STATES


async def plan_reset(conn: Conn, group: str, topic_names: Sequence[str] | None, *, to: str,
                     at: datetime | None = None, offset: int | None = None,
                     partitions: Sequence[int] | None = None) -> ResetPlan:
    """Where ``group`` would be moved. ``to`` = earliest | latest | datetime (``at``) | offset (``offset``)."""
    admin = conn.admin()
    await admin.start()
    try:
        state, members = await describe_group(conn, group, admin)
        committed = {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()
    names = list(topic_names or sorted({tp.topic for tp in committed}))
    if not names:
        raise ToolError(f"group {group} has no committed offsets; name the topics with --topic")
    parts = await partitions_of(conn, names)
    missing = [t for t in names if t not in parts]
    if missing:
        raise ToolError(f"no such topic: {', '.join(missing)}")
    tps = [TopicPartition(t, p) for t in names for p in parts[t] if partitions is None or p in partitions]
    consumer = conn.consumer()
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        if to == "earliest":
            target = dict(begin)
        elif to == "latest":
            target = dict(end)
        elif to == "datetime":
            assert at is not None
            target = await _offsets_at(consumer, tps, at, end)
        elif to == "offset":
            assert offset is not None
            target = {tp: min(max(begin[tp], offset), end[tp]) for tp in tps}
        else:
            raise ToolError(f"unknown reset target {to!r}")
    finally:
        await consumer.stop()
    rows = [ResetRow(tp, committed[tp] if committed.get(tp, -1) >= 0 else None, target[tp], begin[tp], end[tp])
            for tp in tps]
    return ResetPlan(group, state, members, rows)


class GroupActive(ToolError):
    pass


async def apply_reset(conn: Conn, plan: ResetPlan) -> None:
    """Commit the planned offsets for the group, refusing while it has members. The commit is made
    without joining the group (generation -1), which the broker itself rejects for a live group."""
    if plan.active:
        raise GroupActive(f"group {plan.group} is {plan.state} with {plan.members} member(s): stop its consumers first")
    state, members = await describe_group(conn, plan.group)  # again, just before writing
    if members or state not in INACTIVE_GROUP_STATES:
        raise GroupActive(f"group {plan.group} became {state} with {members} member(s): stop its consumers first")
    consumer = conn.consumer(group_id=plan.group)
    await consumer.start()
    try:
        consumer.assign([r.tp for r in plan.rows])
        await consumer.commit({r.tp: OffsetAndMetadata(r.target, "reset by rapport groups reset") for r in plan.rows})
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------ dead letters

@dataclass
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    redriven: dict[str, Any] | None = None

    @property
    def h(self) -> dict[str, str]:
        return headers_dict(self.headers)

    @property
    def mark(self) -> str:
        return redrive_key(self.dlq_topic, self.partition, self.offset)

    @property
    def original_topic(self) -> str:
        """Where a redrive sends it: the topic the DLQ's own name encodes (``<topic>.dlq.<group>``),
        never the record's ``dlq_original_topic`` header: anyone who can write to a DLQ can write
        any header, and the header must not pick the target."""
        m = DLQ_PATTERN.match(self.dlq_topic)
        return m["topic"] if m else ""

    @property
    def header_topic(self) -> str | None:
        return self.h.get("dlq_original_topic")

    @property
    def header_disagrees(self) -> bool:
        """The record's ``dlq_original_topic`` header names another topic than its DLQ's name."""
        return self.header_topic is not None and self.header_topic != self.original_topic

    def original_headers(self) -> list[tuple[str, bytes | None]]:
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]


def redrive_target(dlq_topic: str) -> str:
    """The topic a DLQ's name encodes. Raises ``ToolError`` for a name that is not
    ``<topic>.dlq.<group>`` or whose topic no record may be redriven to (Kafka-internal, another
    DLQ, the redrive state, the private contacts table)."""
    m = DLQ_PATTERN.match(dlq_topic)
    if not m:
        raise ToolError(f"not a dead-letter topic (<topic>.dlq.<group>): {dlq_topic}")
    target = m["topic"]
    if (target.startswith("__") or DLQ_PATTERN.match(target)
            or target in (REDRIVE_STATE_TOPIC, rapport_topics.PRIVATE_CONTACTS, rapport_topics.PRIVATE_PERSON_KEYS,
                          rapport_topics.ERASURES)):
        raise ToolError(f"{dlq_topic}: records are never redriven to {target}")
    return target


def redrive_key(dlq_topic: str, partition: int, offset: int) -> str:
    return f"{dlq_topic}/{partition}/{offset}"


async def dlq_topics(conn: Conn) -> list[str]:
    return [t for t in await list_topic_names(conn) if DLQ_PATTERN.match(t)]


async def redrive_marks(conn: Conn) -> dict[str, dict[str, Any]]:
    """Every DLQ record already redriven (committed transactions only) → its mark."""
    if REDRIVE_STATE_TOPIC not in await list_topic_names(conn):
        return {}
    plan = await plan_read(conn, [REDRIVE_STATE_TOPIC])
    marks: dict[str, dict[str, Any]] = {}
    async for r in read(conn, plan, isolation_level="read_committed"):
        if r.key is not None and r.value is not None:
            marks[r.key.decode()] = json.loads(r.value)
    return marks


async def dead_letters(conn: Conn, topic_names: Sequence[str] | None = None, *,
                       progress: Progress | None = None) -> list[DeadLetter]:
    names = list(topic_names) if topic_names else await dlq_topics(conn)
    bad = [t for t in names if not DLQ_PATTERN.match(t)]
    if bad:
        raise ToolError(f"not a dead-letter topic (<topic>.dlq.<group>): {', '.join(bad)}")
    if not names:
        return []
    marks = await redrive_marks(conn)
    plan = await plan_read(conn, names)
    out = []
    async for r in read(conn, plan, progress=progress):
        dl = DeadLetter(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers or ()))
        dl.redriven = marks.get(dl.mark)
        out.append(dl)
    return sorted(out, key=lambda d: (d.dlq_topic, d.partition, d.offset))


@dataclass
class RedriveResult:
    selected: list[DeadLetter]
    already: list[DeadLetter]
    sent: list[DeadLetter]
    undecodable: list[DeadLetter] = field(default_factory=list)  # held back: no CloudEvent, no ce_id
    mismatched: list[DeadLetter] = field(default_factory=list)  # skipped: dlq_original_topic ≠ the DLQ's topic


def undecodable(d: DeadLetter) -> bool:
    """Dead-lettered because it was not a CloudEvent: redriving it would put poison without a
    ``ce_id`` (no deduplication possible) back on a shared topic."""
    return d.h.get("dlq_reason") == "envelope" or not d.h.get("ce_id")


async def redrive(conn: Conn, dlq_topic: str, *, apply: bool = False, offsets: Sequence[tuple[int, int]] | None = None,
                  reason: str | None = None, event_type: str | None = None, batch: int = 100,
                  include_undecodable: bool = False, progress: Progress | None = None) -> RedriveResult:
    """Send dead letters back to their original topic, each exactly once.

    Exactly once: the record sent to the original topic and its mark on ``rapport.tools.redrive``
    (key ``<dlq topic>/<partition>/<offset>``) are written in ONE Kafka transaction; marked records
    are skipped. The transactional id is fixed per DLQ topic, so starting a second redrive of the
    same DLQ fences the first (its open transaction is aborted, its later commits fail) before the
    marks are read. A redriven record keeps its ``ce_id``, so even a consumer reading uncommitted
    data (which could see a send whose transaction then aborted) applies it once through its inbox.
    Records that were not CloudEvents (``dlq_reason=envelope`` or no ``ce_id``) are held back unless
    ``include_undecodable``.

    The target is the topic the DLQ's name encodes (``redrive_target``), never a header: a record
    whose ``dlq_original_topic`` header names another topic was not dead-lettered by this DLQ's
    consumer (or was tampered with) and is skipped and reported (``mismatched``), not sent."""
    target = redrive_target(dlq_topic)
    producer = None
    if apply:
        await ensure_topic(conn, REDRIVE_STATE_TOPIC, 1, {"cleanup.policy": "compact"})
        producer = conn.producer(transactional_id=f"rapport-redrive:{dlq_topic}")
        await producer.start()  # InitProducerId: fences an earlier redriver of this DLQ
    try:
        letters = await dead_letters(conn, [dlq_topic])
        wanted = set(offsets or ())
        selected = [d for d in letters
                    if (not wanted or (d.partition, d.offset) in wanted)
                    and (reason is None or d.h.get("dlq_reason") == reason)
                    and (event_type is None or d.h.get("ce_type") == event_type)]
        mismatched = [d for d in selected if not d.redriven and d.header_disagrees]
        held = [d for d in selected if not d.redriven and undecodable(d) and not include_undecodable
                and d not in mismatched]
        already = [d for d in selected if d.redriven]
        todo = [d for d in selected if not d.redriven and d not in held and d not in mismatched]
        sent: list[DeadLetter] = []
        if producer is None:
            return RedriveResult(selected, already, [], held, mismatched)
        me = f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}"
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            async with producer.transaction():
                for d in chunk:
                    md = await (await producer.send(target, value=d.value, key=d.key or None,
                                                    headers=d.original_headers()))
                    mark = {"dlq_topic": d.dlq_topic, "dlq_partition": d.partition, "dlq_offset": d.offset,
                            "target_topic": md.topic, "target_partition": md.partition, "target_offset": md.offset,
                            "ce_id": d.h.get("ce_id"), "ce_type": d.h.get("ce_type"),
                            "redriven_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "by": me}
                    await producer.send(REDRIVE_STATE_TOPIC, key=d.mark.encode(), value=json.dumps(mark).encode())
                    d.redriven = mark
            sent.extend(chunk)
            if progress:
                progress(len(chunk))
        return RedriveResult(selected, already, sent, held, mismatched)
    finally:
        if producer is not None:
            await producer.stop()
