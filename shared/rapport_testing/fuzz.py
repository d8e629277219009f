"""Hostile records for every topic the services consume (issue 11, item 4). Test support only.

Two sources, both driven by Hypothesis:

- **from the published schemas** (``hypothesis-jsonschema`` over ``docs/events/schemas/events/*.json``): a
  valid-looking CloudEvent of a type of the topic, then broken — a required field removed, set to
  null or to a value of the wrong JSON type, its bytes mutated, one header broken, or sent to the
  wrong topic;
- **hand-made hostile shapes**: deep nesting, megabyte strings (and one record at the edge of the
  broker's limit, too large to dead-letter with its value), invalid UTF-8, NaN/Infinity, duplicate
  object keys, duplicate / missing / null / non-UTF-8 / oversized headers, non-object values, a
  tombstone, an empty value, huge keys, unknown and foreign event types.

No record produced here can be *applied*: :func:`expected` runs the consumer's own envelope and
contract checks on each one and a record that would pass them is defused (its ``episode_id``
nulled), so fuzzing a shared system creates no course, score or notification. Each record ends
ignored (committed) or dead-lettered: which one is what a run counts.

Every key of a hostile event record starts with ``poison-`` (the partner example's e2e test skips
those) and a record without a key carries no ``ce_id``.

The private contacts topic (not CloudEvents) gets its own shapes: bad keys, tampered ciphertext,
unknown key ids, missing headers, tombstones of made-up people. The clock topic is read by
``SimulatedClock``: :func:`clock_records` are hostile ticks, none later than the marker.

``python -m rapport_testing.fuzz --per-topic N`` (``bench/fuzz.py``) runs them against the
four services; ``tests/e2e/test_hostile_records.py`` runs a few hundred in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Callable, Iterable

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from rapport_shared import envelope
from rapport_shared.contracts import model_for
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES, PRIVATE_CONTACTS, SHARED_TOPICS, dlq_topic
from rapport_tools.contracts.export import SCHEMA_DIR

CLOCK_TOPIC = "rapport.clock"
MARKER_TYPE = "rapport.fuzz.marker.v1"  # in no catalogue: every consumer commits it as "ignored"
KEY_PREFIX = b"poison-"

# The live consumer groups and the topics they read (the services' declared Kafka access; bench/services.GROUPS).
GROUPS: dict[str, tuple[str, ...]] = {
    "rapport-scheduler": (INTAKE, OUTCOMES),
    "rapport-outcomes": (INTAKE, COURSE),
    "rapport-notifier": SHARED_TOPICS,
    "rapport-notifier-contacts": (PRIVATE_CONTACTS,),
}
NO_DLQ_GROUPS = {"rapport-notifier-contacts"}  # the contacts reader skips what it cannot read

# Kafka's default message.max.bytes is 1,048,588 for a whole batch, the producer's max_request_size
# 1 MiB: "megabyte" values stay well below, the edge record just below.
MEGABYTE = 1_000_000
PRODUCER_MAX_REQUEST = 1_048_576


# ---------------------------------------------------------------------------------- schemas


def _hypothesis_jsonschema_compat() -> None:
    """hypothesis-jsonschema 0.23.1 (the latest) calls ``many.more()``, which Hypothesis removed
    (6.1xx: ``many`` became a context manager). Give its module the old protocol back; only
    ``hypothesis_jsonschema._from_schema`` sees the shim."""
    from hypothesis.internal.conjecture import utils as cu
    from hypothesis_jsonschema import _from_schema

    if hasattr(cu.many, "more"):
        return

    class _Many:
        def __init__(self, data, min_size, max_size, average_size):
            self.data, self.min_size, self.max_size = data, min_size, max_size
            self.p = cu._calc_p_continue(average_size - min_size, max_size - min_size)
            self.count = 0

        def more(self) -> bool:
            if self.count < self.min_size:
                go = self.data.draw_boolean(1.0 if self.p >= 1 else self.p, forced=True) if self.p > 0 else True
            elif self.count >= self.max_size or self.p <= 0:
                go = self.data.draw_boolean(self.p, forced=False) if self.p < 1 else False
            else:
                go = self.data.draw_boolean(self.p)
            self.count += go
            return go

        def reject(self, why: str | None = None) -> None:
            self.count -= 1

    class _Cu:
        def __getattr__(self, name):
            return getattr(cu, name)

    shim = _Cu()
    shim.many = _Many
    _from_schema.cu = shim


@cache
def schemas() -> dict[str, dict]:
    """Event type -> its published JSON Schema."""
    out = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        s = json.loads(path.read_text())
        out[s["x-cloudevents-type"]] = s
    return out


@cache
def types_of(topic: str) -> tuple[str, ...]:
    return tuple(t for t, s in schemas().items() if s["x-kafka-topic"] == topic)


@cache
def data_strategy(event_type: str) -> st.SearchStrategy[dict]:
    from hypothesis_jsonschema import from_schema

    _hypothesis_jsonschema_compat()
    schema = _small({k: v for k, v in schemas()[event_type].items() if not k.startswith("x-")})
    return from_schema(schema)


def _small(schema: Any) -> Any:
    """The same schema with short arrays and strings (still valid, much faster to generate)."""
    if isinstance(schema, list):
        return [_small(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _small(v) for k, v in schema.items()}
    if out.get("type") == "array" or "items" in out:
        out["maxItems"] = min(out.get("maxItems", 3), max(out.get("minItems", 0), 3))
    if out.get("type") == "string" and "pattern" not in out and "format" not in out and "enum" not in out:
        out["maxLength"] = min(out.get("maxLength", 40), max(out.get("minLength", 0), 40))
    return out


POOL_SIZE = {"n": 6}  # schema-generated examples per event type (hypothesis-jsonschema is slow: ~50-400 ms each)


def set_pool_size(n: int) -> None:
    POOL_SIZE["n"] = max(1, n)
    base_pool.cache_clear()


@cache
def base_pool(event_type: str) -> tuple[str, ...]:
    """Valid examples of ``event_type`` generated from its published schema (JSON text), drawn from
    by every schema-derived kind; Hypothesis then chooses which one and how to break it."""
    return tuple(json.dumps(d) for d in _collect(data_strategy(event_type), POOL_SIZE["n"], hash(event_type) % 2**31))


def _required(event_type: str) -> list[str]:
    return list(schemas()[event_type].get("required", []))


# ---------------------------------------------------------------------------------- records


@dataclass
class Hostile:
    kind: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int | None = None  # set when produced
    offset: int | None = None

    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v or b"") for k, v in self.headers)


def ce_headers(event_type: str, subject: str, *, ce_id: str | None = None, when: datetime | None = None,
               source: str = "/rapport/fuzz") -> list[tuple[str, bytes | None]]:
    when = when or datetime(2026, 11, 26, 10, tzinfo=timezone.utc)
    return [("content-type", b"application/json"), ("ce_specversion", b"1.0"),
            ("ce_id", (ce_id or str(uuid.uuid4())).encode()), ("ce_source", source.encode()),
            ("ce_type", event_type.encode()), ("ce_time", envelope.format_time(when).encode()),
            ("ce_subject", subject.encode()), ("ce_dataschema", envelope.schema_uri(event_type).encode())]


def _set(headers, name: str, value: bytes | None) -> list[tuple[str, bytes | None]]:
    return [(k, value if k == name else v) for k, v in headers]


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=True).encode()


def _poison_key(episode: str) -> bytes:
    return KEY_PREFIX + episode.encode()


uuids = st.uuids().map(str)
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc))


@st.composite
def _base(draw, topic: str, event_type: str | None = None) -> tuple[str, str, dict, list]:
    """A valid-looking event of a type of ``topic``: (type, episode, data, headers)."""
    event_type = event_type or draw(st.sampled_from(types_of(topic)))
    episode = draw(uuids)
    data = json.loads(draw(st.sampled_from(base_pool(event_type))))
    if "episode_id" in data:
        data["episode_id"] = episode
    headers = ce_headers(event_type, episode, ce_id=draw(uuids), when=draw(times))
    return event_type, episode, data, headers


def _wrong_type_for(prop: dict) -> Any:
    """A JSON value the property's schema cannot accept (and pydantic cannot coerce)."""
    kinds = {prop.get("type")} | {a.get("type") for a in prop.get("anyOf", [])}
    if prop.get("$ref") or "object" in kinds or "array" in kinds:
        return "not-an-object"
    return {"fuzz": [1, {"nested": True}]}


@st.composite
def schema_missing_field(draw, topic):
    t, ep, data, h = draw(_base(topic))
    req = [f for f in _required(t) if f in data] or list(data)
    for name in draw(st.lists(st.sampled_from(req), min_size=1, max_size=len(req), unique=True)):
        data.pop(name, None)
    return Hostile("schema_missing_field", topic, _poison_key(ep), _dumps(data), h)


@st.composite
def schema_wrong_type(draw, topic):
    t, ep, data, h = draw(_base(topic))
    props = schemas()[t].get("properties", {})
    name = draw(st.sampled_from(_required(t) or list(props)))
    data[name] = _wrong_type_for(props.get(name, {}))
    return Hostile("schema_wrong_type", topic, _poison_key(ep), _dumps(data), h)


@st.composite
def schema_null_field(draw, topic):
    t, ep, data, h = draw(_base(topic))
    name = draw(st.sampled_from(_required(t) or ["episode_id"]))
    data[name] = None
    return Hostile("schema_null_field", topic, _poison_key(ep), _dumps(data), h)


@st.composite
def schema_other_topic_type(draw, topic):
    """A valid event of a type that belongs to another topic."""
    other = draw(st.sampled_from([t for t in schemas() if schemas()[t]["x-kafka-topic"] != topic]))
    src = schemas()[other]["x-kafka-topic"]
    t, ep, data, h = draw(_base(src, other))
    return Hostile("schema_other_topic_type", topic, _poison_key(ep), _dumps(data), h)


BROKEN_HEADERS = ("missing", "duplicate_type", "duplicate_id", "null", "non_utf8", "oversized", "bad_specversion",
                  "bad_id", "naive_time", "bad_time", "bad_content_type", "empty")


@st.composite
def schema_bad_header(draw, topic):
    t, ep, data, h = draw(_base(topic))
    how = draw(st.sampled_from(BROKEN_HEADERS))
    required = list(envelope.REQUIRED_HEADERS)
    if how == "missing":
        gone = draw(st.sampled_from(required))
        h = [(k, v) for k, v in h if k != gone]
    elif how == "duplicate_type":
        h.append(("ce_type", draw(st.sampled_from(sorted(schemas()))).encode() + b"x"))
    elif how == "duplicate_id":
        h.append(("ce_id", str(uuid.uuid4()).encode()))
    elif how == "null":
        h = _set(h, draw(st.sampled_from(required)), None)
    elif how == "non_utf8":
        h = _set(h, draw(st.sampled_from(required)), draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b"])))
    elif how == "oversized":
        h = _set(h, draw(st.sampled_from(required)), b"x" * draw(st.integers(envelope.MAX_HEADER_BYTES + 1, 64_000)))
    elif how == "bad_specversion":
        h = _set(h, "ce_specversion", draw(st.sampled_from([b"0.3", b"2.0", b"1.0 ", b"1"])))
    elif how == "bad_id":
        h = _set(h, "ce_id", draw(st.text(max_size=40).filter(lambda s: not _is_uuid(s))).encode() or b"x")
    elif how == "naive_time":
        h = _set(h, "ce_time", b"2026-11-26T10:00:00")
    elif how == "bad_time":
        h = _set(h, "ce_time", draw(st.sampled_from([b"yesterday", b"2026-13-40T99:00:00Z", b"NaN", b"0"])))
    elif how == "bad_content_type":
        h = _set(h, "content-type", draw(st.sampled_from([b"text/plain", b"application/xml", b"application/cloudevents+json"])))
    else:  # empty
        h = _set(h, draw(st.sampled_from(required)), b"")
    return Hostile(f"schema_bad_header:{how}", topic, _poison_key(ep), _dumps(data), h)


def _is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


@st.composite
def schema_bytes_mutation(draw, topic):
    """The serialized event, its bytes mutated: truncated, a byte flipped/inserted, NaN, a duplicate key."""
    t, ep, data, h = draw(_base(topic))
    raw = bytearray(_dumps(data))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "nan", "infinity", "duplicate_key", "trailing"]))
    if how == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
    elif how == "insert":
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif how in ("nan", "infinity"):
        token = b"NaN" if how == "nan" else draw(st.sampled_from([b"Infinity", b"-Infinity"]))
        raw = bytearray(raw[:-1] + b',"fuzz_number":' + token + b"}")
    elif how == "duplicate_key":
        raw = bytearray(raw[:-1] + b',"episode_id":"' + ep.encode() + b'"}')
    else:
        raw += draw(st.sampled_from([b"x", b"}", b" {}", b"\x00"]))
    return Hostile(f"schema_bytes:{how}", topic, _poison_key(ep), bytes(raw), h)


# ------------------------------------------------------------------ hand-made hostile shapes


def _handmade(kind: str, build: Callable[[Any, str, str, list], tuple[bytes | None, bytes | None, list]]):
    @st.composite
    def strategy(draw, topic):
        t = draw(st.sampled_from(types_of(topic)))
        ep = draw(uuids)
        h = ce_headers(t, ep, ce_id=draw(uuids))
        key, value, h = build(draw, t, ep, h)
        return Hostile(kind, topic, key, value, h)

    strategy.__name__ = kind
    return strategy


def _deep(draw, t, ep, h):
    depth = draw(st.sampled_from([1_000, 3_000, 20_000, 200_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    depth = min(depth, 900_000 // (len(opener) + len(closer)))  # below the broker's limit
    if draw(st.booleans()):  # inside a field of an otherwise plausible object
        return _poison_key(ep), b'{"episode_id":"' + ep.encode() + b'","deep":' + opener * depth + b"1" + closer * depth + b"}", h
    return _poison_key(ep), opener * depth + (b"1" if opener != b"[" else b"") + closer * depth, h


def _megabyte(draw, t, ep, h):
    size = draw(st.integers(MEGABYTE - 50_000, MEGABYTE))
    field_name = draw(st.sampled_from([*_required(t), "fuzz_padding"]))
    char = draw(st.sampled_from(["a", "é", "\u20ac", "\\u0000", "0"]))
    body = (char * (size // max(1, len(char.encode())))).encode()[:size]
    return _poison_key(ep), b'{"episode_id":"' + ep.encode() + b'","' + field_name.encode() + b'":"' + body + b'"}', h


def _edge(draw, t, ep, h):
    """As large as the producer lets through: dead-lettering it with dlq_* headers overflows, so the
    consumer must dead-letter it without its value (``dlq_value_omitted``)."""
    key = _poison_key(ep)
    room = PRODUCER_MAX_REQUEST - 200 - len(key) - sum(len(k) + len(v or b"") + 4 for k, v in h)
    return key, b'"' + b"e" * (room - 2) + b'"', h


def _invalid_utf8(draw, t, ep, h):
    bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"]))
    return _poison_key(ep), b'{"episode_id":"' + ep.encode() + bad + b'"}', h


def _lone_surrogate(draw, t, ep, h):  # valid JSON, not encodable to UTF-8 (or storable in Postgres)
    return _poison_key(ep), b'{"episode_id":"\\ud800' + ep.encode() + b'","x":"\\udfff\\u0000"}', h


def _nan(draw, t, ep, h):
    token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"]))
    return _poison_key(ep), b'{"episode_id":"' + ep.encode() + b'","score":' + token + b',"total":' + token + b"}", h


def _duplicate_json_key(draw, t, ep, h):
    other = str(uuid.uuid4()).encode()
    return _poison_key(ep), b'{"episode_id":"' + ep.encode() + b'","episode_id":"' + other + b'"}', h


def _not_an_object(draw, t, ep, h):
    value = draw(st.sampled_from([b"null", b"[]", b"[{}]", b"0", b"-0.0", b"true", b'"text"', b"1e308", b" ", b"\x00",
                                  b"\xef\xbb\xbf{}", b"{}{}"]))
    return _poison_key(ep), value, h


def _tombstone(draw, t, ep, h):
    return _poison_key(ep), None, h


def _empty(draw, t, ep, h):
    return _poison_key(ep), b"", h


def _huge_key(draw, t, ep, h):
    size = draw(st.sampled_from([1_024, 64_000, 500_000]))
    tail = draw(st.sampled_from([b"k", b"\xff", b"\x00"]))
    return KEY_PREFIX + tail * size, _dumps({"episode_id": None}), h


def _no_key(draw, t, ep, h):
    # Without a key the partner example cannot tell it is planted: no ce_id either, so it is not
    # counted as one of Rapport's records (and the envelope refuses it).
    key = draw(st.sampled_from([None, b""]))
    return key, _dumps({"episode_id": ep}), [(k, v) for k, v in h if k != "ce_id"]


def _non_utf8_key(draw, t, ep, h):
    return KEY_PREFIX + b"\xff\xfe\x00" + ep.encode(), _dumps({"episode_id": None}), h


def _unknown_type(draw, t, ep, h):
    name = draw(st.sampled_from(["rapport.fuzz.unknown.v1", "rapport.intake.completed.v2", "RAPPORT.INTAKE.COMPLETED.V1",
                                 "rapport.intake.completed.v1 ", "com.example.other.v1"]))
    return _poison_key(ep), _dumps({"episode_id": ep}), _set(h, "ce_type", name.encode())


def _header_storm(draw, t, ep, h):
    n = draw(st.integers(50, 2_000))
    return _poison_key(ep), _dumps({"episode_id": None}), h + [(f"x-fuzz-{i}", b"v" * 32) for i in range(n)]


def _null_fields(draw, t, ep, h):
    return _poison_key(ep), _dumps({name: None for name in _required(t)}), h


HANDMADE = {name: _handmade(name, fn) for name, fn in (
    ("deep_nesting", _deep), ("megabyte_string", _megabyte), ("edge_size", _edge), ("invalid_utf8", _invalid_utf8),
    ("lone_surrogate", _lone_surrogate), ("nan_infinity", _nan), ("duplicate_json_key", _duplicate_json_key),
    ("not_an_object", _not_an_object), ("tombstone", _tombstone), ("empty_value", _empty), ("huge_key", _huge_key),
    ("no_key", _no_key), ("non_utf8_key", _non_utf8_key), ("unknown_type", _unknown_type),
    ("header_storm", _header_storm), ("null_fields", _null_fields),
)}
SCHEMA_KINDS = {"schema_missing_field": schema_missing_field, "schema_wrong_type": schema_wrong_type,
                "schema_null_field": schema_null_field, "schema_other_topic_type": schema_other_topic_type,
                "schema_bad_header": schema_bad_header, "schema_bytes_mutation": schema_bytes_mutation}
BIG_KINDS = {"megabyte_string", "edge_size"}  # ~1 MB each: a few per batch
WEIGHTS = {**{k: 3 for k in SCHEMA_KINDS}, "schema_bad_header": 4, **{k: 1 for k in HANDMADE}}


# ------------------------------------------------------------------------ private contacts


CONTACT_SMALL = ("tampered", "unknown_kid", "no_format", "wrong_format", "no_alg", "short", "random", "other_person",
                 "bad_key", "huge_key", "no_key", "non_utf8_header", "null_value_no_format", "tombstone_unknown_person",
                 "plaintext_json")
CONTACT_BIG = ("deep_nesting", "megabyte")


@st.composite
def contact_record(draw, big: bool = False):
    from rapport_shared.private_contacts import (ALGORITHM, H_ALG, H_ERASED, H_KID, H_RECORD, RECORD_FORMAT, ContactRecordV1,
                                    Keyring, encode_contact)

    person = "P-fuzz-" + draw(st.text("0123456789abcdef", min_size=8, max_size=12))
    good = encode_contact(ContactRecordV1(person_id=person, email=f"{person}@fuzz.invalid",
                                          updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc)), Keyring.development())
    key, value, headers = good.key, good.value, dict(good.headers)
    how = draw(st.sampled_from(CONTACT_BIG if big else CONTACT_SMALL))
    if how == "tampered":
        i = draw(st.integers(0, len(value) - 1))
        value = value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1:]
    elif how == "unknown_kid":
        headers[H_KID] = draw(st.sampled_from(["fuzz-9", "", "../../etc", "k" * 300]))
    elif how == "no_format":
        headers.pop(H_RECORD)
    elif how == "wrong_format":
        headers[H_RECORD] = draw(st.sampled_from(["contact.v2", "CONTACT.V1", ""]))
    elif how == "no_alg":
        headers.pop(H_ALG)
    elif how == "short":
        value = value[: draw(st.integers(0, 12))]
    elif how == "random":
        value = draw(st.binary(min_size=13, max_size=2_000))
    elif how == "other_person":  # a value copied under another person's key does not decrypt
        key = b"P-fuzz-other-" + draw(st.text("0123456789", min_size=4, max_size=4)).encode()
    elif how == "bad_key":
        key = draw(st.sampled_from([b"\xff\xfe", b"P fuzz", b"-P-fuzz", b"P-fuzz\x00", "P-fuzz-\u00e9".encode()]))
    elif how == "huge_key":
        key = b"P-fuzz-" + b"k" * draw(st.sampled_from([65, 1_000, 100_000]))
    elif how == "no_key":  # an empty key: a compacted topic refuses a null one (the whole batch fails)
        key = b""
    elif how == "non_utf8_header":
        headers = {**headers, H_KID: None}
    elif how == "null_value_no_format":
        value, headers = None, {H_ERASED: "true"}
    elif how == "tombstone_unknown_person":  # a valid erasure of nobody: applied, harmless
        value, headers = None, {H_RECORD: RECORD_FORMAT, H_ERASED: "true"}
    elif how == "plaintext_json":
        value = json.dumps({"person_id": person, "email": "x@y"}).encode()
    elif how == "deep_nesting":
        value = b"[" * 200_000 + b"]" * 200_000
    else:
        value = b"m" * draw(st.integers(MEGABYTE - 50_000, MEGABYTE))
    raw = [(k, v.encode() if isinstance(v, str) else (b"\xff\xfe" if v is None and how == "non_utf8_header" else v))
           for k, v in headers.items()]
    assert ALGORITHM and H_ALG  # imported for the shapes above
    return Hostile(f"contacts:{how}", PRIVATE_CONTACTS, key, value, raw)


# ------------------------------------------------------------------------------- generation


def _collect(strategy: st.SearchStrategy, n: int, seed_value: int) -> list:
    out: list = []
    if n <= 0:
        return out

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @seed(seed_value)
    @given(strategy)
    def run(x):
        if len(out) < n:
            out.append(x)

    run()
    while out and len(out) < n:  # a small space, exhausted: repeat it (fresh ids below)
        out.append(out[len(out) % max(1, len(out))])
    return out


def _plan(n: int, kinds: dict[str, int], big_cap: int) -> dict[str, int]:
    """How many records of each kind, proportional to the weights, big kinds capped."""
    total = sum(kinds.values())
    plan = {k: n * w // total for k, w in kinds.items()}
    for k in BIG_KINDS & plan.keys():
        plan[k] = min(plan[k], big_cap)
    names = sorted(kinds, key=lambda k: -kinds[k])
    i = 0
    while sum(plan.values()) < n:  # the remainder to the non-big kinds, in turn
        k = names[i % len(names)]
        if k not in BIG_KINDS:
            plan[k] += 1
        i += 1
    for k in names:  # at least one of each when there is room
        if plan[k] == 0 and sum(1 for v in plan.values() if v > 1) and n >= len(kinds):
            donor = max(plan, key=plan.get)
            plan[donor] -= 1
            plan[k] = 1
    return plan


def hostile_records(topic: str, n: int, *, seed_value: int = 0, big_cap: int | None = None) -> list[Hostile]:
    """``n`` hostile records for ``topic`` (a shared topic or the private contacts topic), shuffled."""
    big_cap = max(1, n // 1000) if big_cap is None else big_cap
    if topic == PRIVATE_CONTACTS:
        big = min(2 * big_cap, n // 10)
        records = _collect(contact_record(), n - big, seed_value) + _collect(contact_record(big=True), big, seed_value + 1)
    else:
        records = []
        for i, (kind, count) in enumerate(sorted(_plan(n, WEIGHTS, big_cap).items())):
            strategy = (SCHEMA_KINDS.get(kind) or HANDMADE[kind])(topic)
            records += _collect(strategy, count, seed_value * 1000 + i)
    too_big = [r.kind for r in records if r.size() > PRODUCER_MAX_REQUEST - 150]
    assert not too_big, f"generated records larger than Kafka takes: {too_big}"
    rng = random.Random(seed_value)
    rng.shuffle(records)
    out = []
    for r in records:  # fresh ce_ids: a repeated example is still a record of its own
        headers = [(k, str(uuid.uuid4()).encode() if k == "ce_id" and v and _is_uuid_bytes(v) else v) for k, v in r.headers]
        out.append(defuse(Hostile(r.kind, r.topic, r.key, r.value, headers)))
    return out


def _is_uuid_bytes(v: bytes) -> bool:
    try:
        return _is_uuid(v.decode())
    except UnicodeDecodeError:
        return False


# ---------------------------------------------------------------------------------- outcome


def expected(record: Hostile) -> str:
    """What a Rapport consumer must do with ``record``, by the consumer's own checks:

    ``dead_letter`` (the envelope or the type/topic check refuses it: every group dead-letters it),
    ``contract`` (a type of this topic whose data fails its contract: a group that handles the type
    dead-letters it, the others ignore it), ``ignore`` (a type in no catalogue), ``apply`` (a valid
    event: never produced by this module, see :func:`defuse`)."""
    try:
        event = envelope.decode(record.value, record.headers)
    except envelope.EnvelopeError:
        return "dead_letter"
    model = model_for(event.type)
    if model is None:
        return "ignore"
    if model.topic != record.topic:
        return "dead_letter"
    try:
        model.model_validate(event.data)
    except Exception:
        return "contract"
    return "apply"


def defuse(record: Hostile) -> Hostile:
    """A record the services would apply gets its ``episode_id`` nulled (a contract failure)."""
    if record.topic == PRIVATE_CONTACTS or expected(record) != "apply":
        return record
    data = json.loads(record.value)
    data["episode_id"] = None
    return Hostile(record.kind + "+defused", record.topic, record.key, _dumps(data), record.headers)


def marker(topic: str) -> Hostile:
    """A valid record every group ends at once: an event of a type in no catalogue (ignored), or on
    the contacts topic the tombstone of a person who never existed (an erasure of nothing)."""
    if topic == PRIVATE_CONTACTS:
        from rapport_shared.private_contacts import encode_tombstone

        t = encode_tombstone(f"P-fuzz-marker-{uuid.uuid4().hex[:12]}")
        return Hostile("marker", topic, t.key, None, t.kafka_headers())
    ep = str(uuid.uuid4())
    return Hostile("marker", topic, KEY_PREFIX + b"marker-" + ep.encode(), _dumps({"episode_id": ep}),
                   ce_headers(MARKER_TYPE, ep))


# ------------------------------------------------------------------------------- the clock


def clock_records(n: int, *, seed_value: int = 0, before: datetime) -> list[Hostile]:
    """Hostile records for the clock topic: nothing here is a tick later than ``before``."""

    @st.composite
    def tick(draw):
        how = draw(st.sampled_from(["now_number", "now_null", "now_list", "naive", "garbage", "deep", "not_utf8",
                                    "not_object", "tombstone", "empty", "past_tick", "megabyte", "no_now", "nan"]))
        past = envelope.format_time(before - timedelta(days=draw(st.integers(1, 10_000))))
        value = {
            "now_number": b'{"now": 5}', "now_null": b'{"now": null}', "now_list": b'{"now": ["2030-01-01T00:00:00Z"]}',
            "naive": b'{"now": "2030-01-01T00:00:00"}', "garbage": b'{"now": "soon"}',
            "deep": b"[" * 200_000 + b"]" * 200_000, "not_utf8": b'{"now": "\xff"}', "not_object": b"[1, 2]",
            "tombstone": None, "empty": b"", "past_tick": json.dumps({"now": past}).encode(),
            "megabyte": b'{"now": "' + b"9" * 900_000 + b'"}', "no_now": b"{}", "nan": b'{"now": NaN}',
        }[how]
        return Hostile(f"clock:{how}", CLOCK_TOPIC, b"clock", value, ce_headers("rapport.clock.advanced.v1", "clock"))

    records = _collect(tick(), n, seed_value)
    return [r for r in records if r.kind != "clock:megabyte"][: max(0, n - 2)] + \
           [r for r in records if r.kind == "clock:megabyte"][:2]


# ---------------------------------------------------------------------------- kafka, counts


async def produce(bootstrap: str, records: Iterable[Hostile], partitions: dict[str, list[int]]) -> list[Hostile]:
    """Send each record round-robin over its topic's partitions; fills ``partition``/``offset``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_request_size=PRODUCER_MAX_REQUEST, request_timeout_ms=60_000)
    await producer.start()
    try:
        turn: dict[str, int] = {}
        pending = []
        sent = []
        for r in records:
            parts = partitions[r.topic]
            r.partition = parts[turn.get(r.topic, 0) % len(parts)]
            turn[r.topic] = turn.get(r.topic, 0) + 1
            pending.append((r, await producer.send(r.topic, value=r.value, key=r.key, headers=r.headers,
                                                   partition=r.partition)))
            if len(pending) >= 500:
                sent += await _settle(pending)
                pending = []
        sent += await _settle(pending)
        return sent
    finally:
        await producer.stop()


async def _settle(pending) -> list[Hostile]:
    out = []
    for r, fut in pending:
        md = await fut
        r.offset = md.offset
        out.append(r)
    return out


async def partitions_of(bootstrap: str, topics: Iterable[str]) -> dict[str, list[int]]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        cluster = await c._client.fetch_all_metadata()
        return {t: sorted(cluster.partitions_for_topic(t) or ()) for t in topics}
    finally:
        await c.stop()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topics = list(topics)
    parts = await partitions_of(bootstrap, topics)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in parts[t]]
        ends = await c.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await c.stop()


async def wait_past(bootstrap: str, markers: list[Hostile], groups: dict[str, tuple[str, ...]],
                    timeout: float) -> dict[str, dict[tuple[str, int], int]]:
    """Until every group committed past every marker on its topics (or ``timeout``). Returns each
    group's committed offsets at that moment."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = {}
            for group in groups:
                offs = await admin.list_consumer_group_offsets(group)
                committed[group] = {(tp.topic, tp.partition): m.offset for tp, m in offs.items()}
            waiting = [(g, m.topic, m.partition) for g, topics in groups.items() for m in markers
                       if m.topic in topics and committed[g].get((m.topic, m.partition), -1) <= m.offset]
            if not waiting or time.monotonic() > deadline:
                return committed
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


async def read_dead_letters(bootstrap: str, topic: str, start: dict[int, int], timeout: float = 120) -> list[dict]:
    """The headers of every record on a DLQ topic from ``start`` (partition -> offset) to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         fetch_max_bytes=8 * MEGABYTE, max_partition_fetch_bytes=2 * MEGABYTE)
    await c.start()
    try:
        cluster = await c._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        c.assign(tps)
        end = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, start.get(tp.partition, 0))
        remaining = {tp for tp in tps if start.get(tp.partition, 0) < end[tp]}
        out = []
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            batch = await c.getmany(*remaining, timeout_ms=500)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < end[tp]:
                        out.append({k: (v or b"").decode("utf-8", "replace") for k, v in m.headers}
                                   | {"_value_len": str(len(m.value or b""))})
            for tp in list(remaining):
                if await c.position(tp) >= end[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"{topic}: not read to its end in {timeout}s")
        return out
    finally:
        await c.stop()


@dataclass
class Tally:
    group: str
    topic: str
    produced: int = 0
    processed: int = 0  # ended without a dead letter: ignored, skipped or (contacts) applied
    dead_lettered: int = 0
    blocked: int = 0  # at or after the group's committed offset when the run ended
    doubled: int = 0  # dead-lettered more than once
    missing_dead_letters: list[Hostile] = field(default_factory=list)  # refused by every group, yet not dead-lettered
    value_omitted: int = 0

    def line(self) -> str:
        return (f"{self.topic:<24} {self.group:<26} produced {self.produced:>6}  processed {self.processed:>6}  "
                f"dead-lettered {self.dead_lettered:>6}  blocked {self.blocked}")


async def tally(bootstrap: str, records: list[Hostile], committed: dict[str, dict[tuple[str, int], int]],
                dlq_start: dict[tuple[str, int], int], groups: dict[str, tuple[str, ...]]) -> list[Tally]:
    out = []
    for group, topics in groups.items():
        for topic in topics:
            mine = [r for r in records if r.topic == topic]
            t = Tally(group, topic, produced=len(mine))
            blocked = [r for r in mine if committed[group].get((topic, r.partition), -1) <= r.offset]
            t.blocked = len(blocked)
            dead: dict[tuple[int, int], int] = {}
            if group not in NO_DLQ_GROUPS:
                dq = dlq_topic(topic, group)
                start = {p: off for (tp, p), off in dlq_start.items() if tp == dq}
                for h in await read_dead_letters(bootstrap, dq, start):
                    if h.get("dlq_original_topic") != topic or h.get("dlq_consumer_group") != group:
                        continue
                    k = (int(h["dlq_original_partition"]), int(h["dlq_original_offset"]))
                    dead[k] = dead.get(k, 0) + 1
                    t.value_omitted += h.get("dlq_value_omitted") == "true"
            ours = {(r.partition, r.offset): r for r in mine}
            hits = {k: n for k, n in dead.items() if k in ours}
            t.dead_lettered = len(hits)
            t.doubled = sum(1 for n in hits.values() if n > 1)
            t.processed = t.produced - t.dead_lettered - t.blocked
            if group not in NO_DLQ_GROUPS:
                t.missing_dead_letters = [r for r in mine if (r.partition, r.offset) not in hits
                                          and r not in blocked and expected(r) == "dead_letter"]
            out.append(t)
    return out


# --------------------------------------------------------------------------------- the run


@dataclass
class ClockResult:
    produced: int
    started: bool
    reached_marker: bool
    error: str = ""

    def line(self) -> str:
        blocked = 0 if self.started and self.reached_marker else self.produced
        return (f"{CLOCK_TOPIC + ' (scratch)':<24} {'SimulatedClock (no group)':<26} produced {self.produced:>6}  "
                f"processed {self.produced - blocked:>6}  dead-lettered {0:>6}  blocked {blocked}"
                + (f"  ({self.error})" if self.error else ""))


async def fuzz_clock(bootstrap: str, n: int, *, seed_value: int = 0, timeout: float = 60) -> ClockResult:
    """Hostile ticks on a scratch clock topic, then a marker tick: a ``SimulatedClock`` must start
    (read them all from the beginning) and reach the marker; then a second batch while it follows."""
    from rapport_shared.clock import SimulatedClock, publish_tick
    from rapport_shared.kafka_admin import ensure_topics

    topic = f"{CLOCK_TOPIC}.fuzz-{uuid.uuid4().hex[:8]}"
    first = datetime(2031, 1, 1, tzinfo=timezone.utc)
    second = first + timedelta(hours=1)
    await ensure_topics(bootstrap, [topic], 1, 1)
    half = n // 2
    batch1 = [Hostile(r.kind, topic, r.key, r.value, r.headers) for r in clock_records(half, seed_value=seed_value, before=first)]
    await produce(bootstrap, batch1, {topic: [0]})
    await publish_tick(bootstrap, first, topic)
    clock = SimulatedClock(bootstrap, topic)
    try:
        await asyncio.wait_for(clock.start(timeout=timeout), timeout)
    except Exception as exc:
        return ClockResult(half + 1, False, False, f"start failed: {type(exc).__name__}: {str(exc)[:200]}")
    try:
        if clock.now() != first:
            return ClockResult(half + 1, True, False, f"after start now={clock.now().isoformat()}, marker {first.isoformat()}")
        batch2 = [Hostile(r.kind, topic, r.key, r.value, r.headers)
                  for r in clock_records(n - half, seed_value=seed_value + 1, before=second)]
        await produce(bootstrap, batch2, {topic: [0]})
        await publish_tick(bootstrap, second, topic)
        deadline = time.monotonic() + timeout
        while clock.now() != second and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        ok = clock.now() == second
        return ClockResult(n + 2, True, ok, "" if ok else f"following: now={clock.now().isoformat()}, marker {second.isoformat()}")
    finally:
        await clock.stop()
        await _delete_topic(bootstrap, topic)


async def _delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception:
        pass
    finally:
        await admin.close()


async def run(bootstrap: str, per_topic: int, *, rounds: int = 1, seed_value: int = 0, timeout: float = 120,
              groups: dict[str, tuple[str, ...]] = GROUPS, big_cap: int | None = None,
              log: Callable[[str], None] = lambda s: None) -> tuple[list[Tally], list[Hostile]]:
    """``per_topic`` hostile records to each topic ``groups`` read, in ``rounds`` batches, each
    followed by a marker on every partition; waits until every group committed past the markers
    (at most ``timeout`` s per round), then counts. Returns the tallies and every record produced."""
    topics = sorted({t for ts in groups.values() for t in ts})
    parts = await partitions_of(bootstrap, topics)
    dlqs = [dlq_topic(t, g) for g, ts in groups.items() if g not in NO_DLQ_GROUPS for t in ts]
    dlq_start = await end_offsets(bootstrap, dlqs)
    everything: list[Hostile] = []
    committed: dict = {}
    for rnd in range(rounds):
        n = per_topic // rounds + (1 if rnd < per_topic % rounds else 0)
        t0 = time.monotonic()
        batch: list[Hostile] = []
        for i, topic in enumerate(topics):
            batch += hostile_records(topic, n, seed_value=seed_value * 100 + rnd * 10 + i,
                                     big_cap=big_cap)
        log(f"round {rnd + 1}/{rounds}: {len(batch)} records generated in {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        sent = await produce(bootstrap, batch, parts)
        markers = await produce(bootstrap, [marker(t) for t in topics for _ in parts[t]], parts)
        log(f"round {rnd + 1}/{rounds}: produced in {time.monotonic() - t0:.1f} s; waiting for the markers")
        t0 = time.monotonic()
        committed = await wait_past(bootstrap, markers, groups, timeout)
        log(f"round {rnd + 1}/{rounds}: markers passed (or timed out) in {time.monotonic() - t0:.1f} s")
        everything += sent
    return await tally(bootstrap, everything, committed, dlq_start, groups), everything


def summary(tallies: list[Tally]) -> str:
    return "\n".join(t.line() for t in tallies)


def main(argv: list[str] | None = None) -> int:
    """The standalone command: see bench/fuzz.py."""
    import sys

    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"  # starts the stack as bench/run.py does
    sys.argv = [str(script), *(sys.argv[1:] if argv is None else argv)]
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
