"""Domain errors → clear HTTP answers naming the field and the reason, in one table."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import Conflict, DomainError, Forbidden, Invalid, NotFound

# The one place a domain error becomes a status code (most specific class first by MRO).
STATUS: dict[type[DomainError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, DomainError: 400}


def status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(exc: DomainError) -> dict[str, object]:
    body: dict[str, object] = {"error": exc.code, "detail": exc.message}
    if exc.field:
        body["field"] = exc.field
    body.update(exc.extra)
    return body


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]} for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "reason": "invalid"}
        return JSONResponse(
            {"error": "validation_error", "detail": f"{first['field']}: {first['reason']}", "errors": errors},
            status_code=422,
        )


__all__ = ["Conflict", "DomainError", "Forbidden", "Invalid", "NotFound", "STATUS", "error_body",
           "install_error_handlers", "status_for"]
