"""Every error of every service as RFC 9457 problem details (``application/problem+json``).

One table maps domain errors to status codes; one body shape for all of them::

    {"type": "urn:rapport:problem:<code>", "title": "...", "status": 404,
     "detail": "no episode ep-1", "field": "episode_id", "error": "NotFound"}

``type`` is a URN naming the problem (the codes are listed in docs/api.md); ``field`` names the
offending input (dotted path) where there is one; ``error`` repeats the code for clients written
before problem details (kept: it costs nothing and breaks nobody). A server error says only that
it happened: no exception text (it might carry health data) — the log has the rest. A body that is
not even text (not UTF-8) is 400 ``malformed_body``; bad JSON or the wrong shape is 422
``validation_error``; text Postgres cannot store (U+0000) is 422 ``unstorable_text``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from asyncpg.exceptions import CharacterNotInRepertoireError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from ..logging import get_logger

log = get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:rapport:problem:"

# The one place a domain error becomes a status code (most specific class first by MRO).
STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, DomainError: 400}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the API is answered."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(description="A URN naming the kind of problem (urn:rapport:problem:<code>)")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(ge=100, le=599, description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request")
    field: str | None = Field(default=None, description="The offending input, as a dotted path, where there is one")
    error: str = Field(description="The problem code (the last part of type)")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


RESERVED = frozenset({"type", "title", "status", "detail", "field", "error"})


def problem(status: int, code: str, detail: str, *, field: str | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    # An extension member never replaces a problem member (RFC 9457 3.2): a domain error that
    # wants to say e.g. a record's status names it otherwise (``episode_status``).
    extra = dict(extra or {})
    clash = RESERVED & extra.keys()
    if clash:  # a bug in the raising code, but the caller still deserves its 4xx, not a 500
        log.error("problem extension members clash with RFC 9457 members", members=sorted(clash))
        extra = {(f"{k}_value" if k in clash else k): v for k, v in extra.items()}
    body: dict[str, Any] = {"type": PROBLEM_TYPE_PREFIX + code, "title": _title(status), "status": status,
                            "detail": detail}
    if field:
        body["field"] = field
    body["error"] = code
    body.update(extra)
    return body


def problem_response(status: int, code: str, detail: str, *, field: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> ProblemResponse:
    return ProblemResponse(problem(status, code, detail, field=field, extra=extra), status_code=status, headers=headers)


def error_body(exc: DomainError) -> dict[str, Any]:
    return problem(status_for(exc), exc.code, exc.message, field=exc.field, extra=exc.extra)


_HTTP_CODES = {400: "malformed_body", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               406: "not_acceptable", 413: "request_too_large", 415: "unsupported_media_type"}


def allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> ProblemResponse:
        return ProblemResponse(error_body(exc), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "reason": "invalid"}
        return problem_response(422, "validation_error", f"{first['field']}: {first['reason']}",
                                field=first["field"] or None, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Allow names every method of the path, not only the first route's
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(exc.status_code, code, detail, headers=headers or None)

    @app.exception_handler(CharacterNotInRepertoireError)
    async def _unstorable(_: Request, exc: CharacterNotInRepertoireError) -> ProblemResponse:
        # JSON and query strings may carry U+0000; Postgres text cannot hold it. The transaction
        # rolled back: nothing was written.
        return problem_response(422, "unstorable_text", "text must not contain the character U+0000 (NUL)")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> ProblemResponse:
        # The text of an unexpected error may quote the data it failed on: the log keeps it, the answer does not.
        log.exception("unhandled error answering a request", error_type=type(exc).__name__)
        return problem_response(500, "internal_error", "the service failed to answer this request; it is logged")


__all__ = ["Conflict", "DomainError", "Forbidden", "Invalid", "NotFound", "PROBLEM_MEDIA_TYPE", "Problem",
           "ProblemResponse", "STATUS", "error_body", "install_error_handlers", "problem", "problem_response",
           "status_for"]
