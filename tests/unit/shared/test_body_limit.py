"""The request body limit every HTTP API has (http/limits.py, wired in create_app)."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from rapport_shared.http.app import create_app
from rapport_shared.http.errors import install_error_handlers
from rapport_shared.http.limits import BodySizeLimit
from rapport_shared.settings import ServiceSettings

LIMIT = 2048


class Slots(BaseModel):
    slots: list[str]


def small_app(calls: list[str]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.middleware("http")  # like create_app's request counter (a BaseHTTPMiddleware)
    async def passthrough(request: Request, call_next):
        return await call_next(request)

    @app.put("/availability")
    async def put(body: Slots) -> dict:
        calls.append("put")
        return {"n": len(body.slots)}

    @app.post("/raw")
    async def raw(request: Request) -> dict:
        data = await request.body()
        calls.append("raw")
        return {"n": len(data)}

    app.add_middleware(BodySizeLimit, max_bytes=LIMIT)
    return app


def _assert_413(r) -> None:
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "request_too_large" and body["field"] == "body" and body["limit_bytes"] == LIMIT
    assert str(LIMIT) in body["detail"]


def test_a_body_within_the_limit_passes():
    calls: list[str] = []
    r = TestClient(small_app(calls)).put("/availability", json={"slots": ["mon 09:00"] * 10})
    assert r.status_code == 200 and r.json() == {"n": 10} and calls == ["put"]


def test_a_declared_content_length_above_the_limit_is_refused_up_front():
    calls: list[str] = []
    payload = json.dumps({"slots": ["mon 09:00"] * 1000}).encode()
    r = TestClient(small_app(calls)).put("/availability", content=payload, headers={"content-type": "application/json"})
    _assert_413(r)
    assert calls == []


def test_a_streamed_body_without_content_length_is_counted_and_refused():
    calls: list[str] = []

    def chunks():
        for _ in range(10):
            yield b"x" * 500

    for path in ("/raw", "/availability"):
        r = TestClient(small_app(calls)).post(path, content=chunks()) if path == "/raw" else \
            TestClient(small_app(calls)).put(path, content=chunks(), headers={"content-type": "application/json"})
        _assert_413(r)
    assert calls == []


def test_a_streamed_body_within_the_limit_passes():
    calls: list[str] = []

    def chunks():
        yield b"x" * 1000
        yield b"y" * 1000

    r = TestClient(small_app(calls)).post("/raw", content=chunks())
    assert r.status_code == 200 and r.json() == {"n": 2000} and calls == ["raw"]


def test_a_lying_content_length_does_not_get_past_the_count():
    """The ASGI server stops at Content-Length; the count still holds when a body is streamed."""
    calls: list[str] = []
    app = small_app(calls)
    sent: list[dict] = []

    async def run() -> None:
        bodies = [{"type": "http.request", "body": b"x" * 1500, "more_body": True},
                  {"type": "http.request", "body": b"x" * 1500, "more_body": False}]

        async def receive():
            return bodies.pop(0) if bodies else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/raw", "raw_path": b"/raw", "query_string": b"", "root_path": "",
                 "headers": [(b"content-length", b"100")], "client": ("t", 1), "server": ("t", 80)}
        await app(scope, receive, send)

    import asyncio

    asyncio.run(run())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert calls == []


class FakeRuntime:
    def __init__(self) -> None:
        self.settings = ServiceSettings(service_name="intake", http_max_body_bytes=LIMIT)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def readiness(self) -> dict[str, str]:
        return {"postgres": "ok"}


def test_create_app_refuses_an_oversized_body_with_413():
    app = create_app(FakeRuntime(), title="t")  # type: ignore[arg-type]
    c = TestClient(app)
    assert c.get("/healthz").status_code == 200
    _assert_413(c.post("/healthz", content=b"x" * (LIMIT + 1)))
    r = c.post("/healthz", content=b"x" * 10)
    assert r.status_code != 413


def test_the_default_limit_is_256_kib(monkeypatch):
    monkeypatch.delenv("RAPPORT_HTTP_MAX_BODY_BYTES", raising=False)
    assert ServiceSettings(service_name="intake").http_max_body_bytes == 256 * 1024
    monkeypatch.setenv("RAPPORT_HTTP_MAX_BODY_BYTES", "4096")
    assert ServiceSettings(service_name="intake").http_max_body_bytes == 4096
