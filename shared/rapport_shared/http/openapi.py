"""The OpenAPI document tells the truth about errors: every operation declares the problem
responses (RFC 9457, ``application/problem+json``) it can answer with, derived from what the
shared layers do to every route, and FastAPI's own ``HTTPValidationError`` schema (which no
route ever answers with) is gone.

What each operation can answer, whatever its handler does:
- 400: a body that cannot be read as text (not UTF-8); JSON with a syntax error, or of the wrong
  shape, is 422;
- 401, 403: the route is not public (access policy: no or a bad token; a role it does not allow);
- 404: a path parameter names a record (missing and not-yours answer alike), or a command that
  names records in its body;
- 409: a command (POST/PUT/PATCH/DELETE) the record's state may refuse;
- 413: a request body over the limit; 422: parameters or a body that fail validation;
- 500: the service failed (no detail).

Request constraints whose values are data the service loads (instrument codes, template ids, time
zones) are marked in the models (``rapport_shared.inputs.known``) and listed here as an ``enum``
from ``values`` (``install_problem_responses(app, values)``), so a client generated from the
document, or schemathesis, sends only what the service accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..inputs import VALUES_KEY, time_zones
from .errors import PROBLEM_MEDIA_TYPE, Problem

# A set of allowed values by name: the values, or a function returning them (called once, when the
# document is first built).
Values = Mapping[str, Iterable[str] | Callable[[], Iterable[str]]]


def _instrument_codes() -> Iterable[str]:
    from ..instruments import load_catalogue  # noqa: PLC0415 (only when a document is built)

    return load_catalogue().codes


# Sets every service knows; a service adds its own (create_app(openapi_values=...)).
SHARED_VALUES: Values = {"timezones": time_zones, "instruments": _instrument_codes}

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
        found |= {400, 413, 422}
    if params:
        found.add(422)
    return sorted(found)


def fill_values(node: Any, values: Values, cache: dict[str, list[str]] | None = None) -> None:
    """Replace every ``x-rapport-values: <name>`` marker in a JSON Schema tree by ``enum``."""
    cache = {} if cache is None else cache
    if isinstance(node, dict):
        name = node.pop(VALUES_KEY, None)
        if name is not None:
            if name not in cache:
                if name not in values:
                    raise KeyError(f"the OpenAPI document needs the values {name!r}; none were given")
                found = values[name]
                cache[name] = sorted(found() if callable(found) else found)
            node["enum"] = cache[name]
        for child in node.values():
            fill_values(child, values, cache)
    elif isinstance(node, list):
        for child in node:
            fill_values(child, values, cache)


def install_problem_responses(app: FastAPI, values: Values | None = None) -> None:
    all_values = {**SHARED_VALUES, **(values or {})}

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
        fill_values(schema, all_values)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
