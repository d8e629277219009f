import json
import uuid
from datetime import datetime, timezone

import pytest

from rapport_shared import envelope
from rapport_shared.contracts import PhaseChangedV1
from rapport_shared.envelope import EnvelopeError

T0 = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)


def sample() -> envelope.CloudEvent:
    data = PhaseChangedV1(episode_id=uuid.uuid4(), course_id=uuid.uuid4(), from_phase="initial", to_phase="middle",
                          effective_from_session=4, reason="checklist_complete", changed_at=T0)
    return envelope.new_event(type=data.event_type, source="/rapport/scheduler", subject=str(data.episode_id),
                              data=data, time=T0, correlation_id="corr-1")


def test_encode_is_binary_mode_with_ce_headers_and_episode_key():
    ev = sample()
    rec = envelope.encode(ev)
    assert rec.key == ev.subject.encode()
    assert json.loads(rec.value) == ev.data  # value is the data only, not a structured envelope
    assert rec.headers["ce_specversion"] == "1.0"
    assert rec.headers["ce_type"] == "rapport.course.phase_changed.v1"
    assert rec.headers["ce_time"] == "2026-11-26T09:30:00Z"
    assert rec.headers["ce_dataschema"] == "https://schemas.rapport.example/events/rapport.course.phase_changed.v1.json"
    assert rec.headers["content-type"] == "application/json"
    assert rec.headers["correlation_id"] == "corr-1"


def test_round_trip():
    ev = sample()
    rec = envelope.encode(ev)
    back = envelope.decode(rec.value, [(k, v.encode()) for k, v in rec.headers.items()])
    assert (back.id, back.type, back.subject, back.time, back.data, back.correlation_id) == (
        ev.id, ev.type, ev.subject, ev.time, ev.data, ev.correlation_id)


def _headers(**override):
    rec = envelope.encode(sample())
    h = {**rec.headers, **override}
    return rec.value, [(k, v.encode()) for k, v in h.items() if v is not None]


@pytest.mark.parametrize("name,value,field", [
    ("ce_id", None, "header ce_id"),
    ("ce_id", "not-a-uuid", "header ce_id"),
    ("ce_specversion", "0.3", "header ce_specversion"),
    ("ce_time", "yesterday", "header ce_time"),
    ("ce_time", "2026-11-26T09:30:00", "header ce_time"),
    ("ce_type", None, "header ce_type"),
    ("ce_subject", None, "header ce_subject"),
    ("content-type", "text/plain", "header content-type"),
])
def test_bad_headers_name_the_field(name, value, field):
    val, headers = _headers(**{name: value})
    with pytest.raises(EnvelopeError) as err:
        envelope.decode(val, headers)
    assert err.value.field == field


@pytest.mark.parametrize("value,reason", [(b"{not json", "not JSON"), (b"[1,2]", "JSON object"), (None, "empty")])
def test_bad_values(value, reason):
    _, headers = _headers()
    with pytest.raises(EnvelopeError) as err:
        envelope.decode(value, headers)
    assert err.value.field == "value" and reason in err.value.reason


def test_naive_time_refused_at_creation():
    with pytest.raises(ValueError):
        envelope.new_event(type="x", source="/s", subject="e", data={}, time=datetime(2026, 1, 1))


def _valid():
    rec = envelope.encode(sample())
    return rec.value, [(k, v.encode()) for k, v in rec.headers.items()]


@pytest.mark.parametrize("case", ["deep_nesting", "not_utf8", "utf16", "nan", "infinity", "duplicate_key",
                                  "duplicate_ce_type", "missing_ce_source", "header_not_bytes", "header_name_bytes",
                                  "huge_header", "value_not_bytes", "headers_not_pairs", "headers_none_items"])
def test_hostile_records_raise_envelope_error_and_nothing_else(case):
    value, headers = _valid()
    if case == "deep_nesting":
        value = b"[" * 200_000 + b"]" * 200_000
    elif case == "not_utf8":
        value = b'{"a": "\xff"}'
    elif case == "utf16":
        value = '{"a": 1}'.encode("utf-16")
    elif case == "nan":
        value = b'{"a": NaN}'
    elif case == "infinity":
        value = b'{"a": -Infinity}'
    elif case == "duplicate_key":
        value = b'{"a": 1, "a": 2}'
    elif case == "duplicate_ce_type":
        headers.append(("ce_type", b"rapport.intake.completed.v1"))
    elif case == "missing_ce_source":
        headers = [(k, v) for k, v in headers if k != "ce_source"]
    elif case == "header_not_bytes":
        headers = [(k, 12345 if k == "ce_time" else v) for k, v in headers]
    elif case == "header_name_bytes":
        headers.append((b"ce_x", b"1"))
    elif case == "huge_header":
        headers = [(k, b"x" * 100_000 if k == "ce_source" else v) for k, v in headers]
    elif case == "value_not_bytes":
        value = {"a": 1}
    elif case == "headers_not_pairs":
        headers = [("ce_id",)]
    elif case == "headers_none_items":
        headers = None
    with pytest.raises(EnvelopeError):
        envelope.decode(value, headers)


def test_encode_refuses_nan():
    ev = sample()
    with pytest.raises(ValueError):
        envelope.encode(envelope.CloudEvent(**{**ev.__dict__, "data": {"x": float("nan")}}))
