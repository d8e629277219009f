"""What callers send is checked exactly as the OpenAPI document says (schemathesis holds the
services to it, tests/e2e/test_openapi_conformance.py): timestamps, integers, days, cursors,
codes the service's data defines, and text Postgres cannot store."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Annotated

import pytest
from asyncpg.exceptions import CharacterNotInRepertoireError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError

from rapport_shared.errors import Invalid
from rapport_shared.http.errors import install_error_handlers
from rapport_shared.http.openapi import install_problem_responses
from rapport_shared.http.paging import CURSOR_PATTERN, after_query, cursor, parse_cursor
from rapport_shared.inputs import Day, Integer, Timestamp, TimeZoneName, known, time_zones


def valid(type_, value):
    return TypeAdapter(type_).validate_python(value)


@pytest.mark.parametrize("value", ["2026-01-31T09:00:00Z", "2026-01-31T09:00:00.123+01:00", "2026-01-31t09:00:00z"])
def test_a_timestamp_is_an_rfc3339_date_time_with_an_offset(value):
    assert valid(Timestamp, value).utcoffset() is not None


@pytest.mark.parametrize("value", [0, 0.5, "0", "0.5", "1767258000", "2026-01-31", "2026-01-31T09:00:00",
                                   "2026-01-31 09:00:00Z", "0001-01-01T00:00:00+01:00", True])
def test_anything_else_is_not_a_timestamp(value):
    with pytest.raises(ValidationError):
        valid(Timestamp, value)


def test_an_integer_is_a_json_integer():
    assert valid(Integer, 3) == 3 and valid(Integer, 3.0) == 3 and isinstance(valid(Integer, 3.0), int)
    for bad in ("3", True, 3.5, None):
        with pytest.raises(ValidationError):
            valid(Integer, bad)


def test_a_day_is_yyyy_mm_dd_only():
    assert valid(Day, "2026-02-28") == date(2026, 2, 28)
    for bad in ("0", 0, "1767258000", "2026-02-30", "2026-02-28T00:00:00Z"):
        with pytest.raises(ValidationError):
            valid(Day, bad)


def test_a_time_zone_is_an_iana_name():
    assert valid(TimeZoneName, "Europe/London") == "Europe/London"
    with pytest.raises(ValidationError):
        valid(TimeZoneName, "Europe/Atlantis")
    assert "Europe/London" in time_zones() and "UTC" in time_zones()


def test_every_cursor_of_the_declared_shape_is_a_position_and_nothing_else_is():
    at, row = datetime(2026, 1, 31, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))), uuid.uuid4()
    assert parse_cursor(cursor(at, row)) == (at, row)
    assert parse_cursor("0/" + str(row)) == (datetime(1970, 1, 1, tzinfo=timezone.utc), row)
    assert parse_cursor(None) == (None, None)
    for bad in ("", "yesterday", f"1.5/{row}", f"12/{str(row).upper()}", f"-1/{row}", "1" * 17 + f"/{row}"):
        with pytest.raises(Invalid) as e:
            parse_cursor(bad)
        assert e.value.field == "after"


class Choice(BaseModel):
    template_id: Annotated[str, known("templates")]
    zone: TimeZoneName | None = None


def app() -> FastAPI:
    a = FastAPI()
    install_error_handlers(a)

    @a.put("/choice")
    async def choose(body: Choice) -> dict:
        return body.model_dump()

    @a.get("/page")
    async def page(after: str | None = after_query()) -> dict:
        return {"after": str(parse_cursor(after)[1])}

    @a.get("/nul")
    async def nul() -> dict:
        raise CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')

    install_problem_responses(a, {"templates": ["ipt-a", "ipt-16"]})
    return a


def test_the_document_lists_the_codes_the_service_data_defines_and_the_cursor_shape():
    doc = TestClient(app()).get("/openapi.json").json()
    props = doc["components"]["schemas"]["Choice"]["properties"]
    assert props["template_id"]["enum"] == ["ipt-16", "ipt-a"] and "x-rapport-values" not in props["template_id"]
    zone = next(s for s in props["zone"]["anyOf"] if s.get("type") == "string")
    assert "Europe/London" in zone["enum"]
    [after] = doc["paths"]["/page"]["get"]["parameters"]
    assert after["schema"]["pattern"] == CURSOR_PATTERN


def test_a_body_that_is_not_text_is_a_declared_400_and_bad_json_a_422():
    client = TestClient(app(), raise_server_exceptions=False)
    r = client.put("/choice", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["type"]) == (400, "urn:rapport:problem:malformed_body")
    assert "400" in client.get("/openapi.json").json()["paths"]["/choice"]["put"]["responses"]
    r = client.put("/choice", content=b"{not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["type"]) == (422, "urn:rapport:problem:validation_error")


def test_a_bad_cursor_is_422_naming_after():
    r = TestClient(app()).get("/page", params={"after": "yesterday"})
    assert (r.status_code, r.json()["field"]) == (422, "after")


def test_text_postgres_cannot_store_is_a_422_not_a_server_error():
    r = TestClient(app(), raise_server_exceptions=False).get("/nul")
    assert (r.status_code, r.json()["type"]) == (422, "urn:rapport:problem:unstorable_text")
