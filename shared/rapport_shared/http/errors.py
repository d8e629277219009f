"""Domain errors → clear HTTP answers naming the field and the reason."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or type(self).__name__
        self.extra = extra


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Invalid(DomainError):
    status_code = 422


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, object] = {"error": exc.code, "detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        body.update(exc.extra)
        return JSONResponse(body, status_code=exc.status_code)

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
