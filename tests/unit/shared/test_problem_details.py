"""Every error answers as RFC 9457 problem details, and the OpenAPI document says so."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from rapport_shared.errors import Conflict, NotFound
from rapport_shared.http.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from rapport_shared.http.limits import BodySizeLimit
from rapport_shared.http.openapi import install_problem_responses


class Body(BaseModel):
    sessions: int = Field(ge=12, le=16)


def app() -> FastAPI:
    a = FastAPI()
    install_error_handlers(a)

    @a.get("/episodes/{episode_id}")
    async def get_episode(episode_id: str) -> dict:
        raise NotFound(f"no episode {episode_id}", field="episode_id")

    @a.put("/episodes/{episode_id}")
    async def put_episode(episode_id: str, body: Body) -> dict:
        raise Conflict("course is in phase middle: no", field="sessions", code="illegal_transition", phase="middle")

    @a.get("/secret")
    async def secret() -> dict:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})

    @a.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("patient jane@example.org broke it")

    install_problem_responses(a)
    a.add_middleware(BodySizeLimit, max_bytes=100)
    return a


def client() -> TestClient:
    return TestClient(app(), raise_server_exceptions=False)


def test_domain_errors_are_problem_details_naming_the_field() -> None:
    r = client().get("/episodes/ep-1")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert r.json() == {"type": "urn:rapport:problem:NotFound", "title": "Not Found", "status": 404,
                        "detail": "no episode ep-1", "field": "episode_id", "error": "NotFound"}
    r = client().put("/episodes/ep-1", json={"sessions": 14})
    assert (r.status_code, r.json()["type"], r.json()["phase"]) == (409, "urn:rapport:problem:illegal_transition",
                                                                     "middle")


def test_validation_names_the_first_field_and_lists_all() -> None:
    r = client().put("/episodes/ep-1", json={"sessions": 40})
    body = r.json()
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM_MEDIA_TYPE)
    assert (body["type"], body["status"], body["field"]) == ("urn:rapport:problem:validation_error", 422, "sessions")
    assert body["errors"][0]["field"] == "sessions" and "16" in body["errors"][0]["reason"]


def test_http_errors_keep_their_headers_and_405_lists_every_method_of_the_path() -> None:
    r = client().get("/secret")
    assert (r.status_code, r.headers["www-authenticate"], r.json()["title"]) == (401, "Bearer", "Unauthorized")
    r = client().options("/episodes/ep-1")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert set(r.headers["allow"].split(", ")) == {"GET", "PUT"}


def test_a_server_error_says_nothing_of_what_it_failed_on() -> None:
    r = client().get("/boom")
    assert r.status_code == 500 and r.json()["type"] == "urn:rapport:problem:internal_error"
    assert "jane" not in r.text and "RuntimeError" not in r.text


def test_a_body_over_the_limit_is_a_problem_too() -> None:
    r = client().put("/episodes/ep-1", content=b'{"sessions": 14' + b" " * 200 + b"}",
                     headers={"content-type": "application/json"})
    assert (r.status_code, r.headers["content-type"], r.json()["field"]) == (413, PROBLEM_MEDIA_TYPE, "body")


def test_openapi_declares_every_problem_and_no_unused_validation_schema() -> None:
    doc = client().get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"] and "Problem" in doc["components"]["schemas"]
    put = doc["paths"]["/episodes/{episode_id}"]["put"]["responses"]
    assert {"401", "403", "404", "409", "413", "422", "500"} <= set(put)
    assert put["422"]["content"] == {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    get = doc["paths"]["/episodes/{episode_id}"]["get"]["responses"]
    assert "404" in get and "409" not in get and "413" not in get
