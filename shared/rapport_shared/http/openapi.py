"""The OpenAPI document tells the truth about errors: every operation declares the problem
responses (RFC 9457, ``application/problem+json``) it can answer with, derived from what the
shared layers do to every route, and FastAPI's own ``HTTPValidationError`` schema (which no
route ever answers with) is gone.

What each operation can answer, whatever its handler does:
- 401, 403: the route is not public (access policy: no or a bad token; a role it does not allow);
- 404: a path parameter names a record (missing and not-yours answer alike), or a command that
  names records in its body;
- 409: a command (POST/PUT/PATCH/DELETE) the record's state may refuse;
- 413: a request body over the limit; 422: parameters or a body that fail validation;
- 500: the service failed (no detail).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .errors import PROBLEM_MEDIA_TYPE, Problem

COMMANDS = {"post", "put", "patch", "delete"}


def _response(status: int) -> dict[str, Any]:
    return {"description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def statuses_for(method: str, path: str, op: dict[str, Any], public: bool) -> list[int]:
    params = op.get("parameters", [])
    has_body = "requestBody" in op
    found: set[int] = {500}
    if not public:
        found |= {401, 403}
    if any(p.get("in") == "path" for p in params) or method in COMMANDS:
        found.add(404)
    if method in COMMANDS:
        found.add(409)
    if has_body:
        found |= {413, 422}
    if params:
        found.add(422)
    return sorted(found)


def install_problem_responses(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        policy = getattr(getattr(app.state, "access", None), "policy", None)
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if method not in {"get", "post", "put", "patch", "delete", "head", "options"}:
                    continue
                rule = policy.rule(method.upper(), path) if policy is not None else None
                public = bool(rule is not None and rule.public)
                responses = op.setdefault("responses", {})
                for status in statuses_for(method, path, op, public):
                    responses[str(status)] = _response(status)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
