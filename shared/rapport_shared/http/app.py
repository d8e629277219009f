"""The HTTP app of a service: its API routers plus health, readiness and metrics."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS, refresh_consumer_lag
from .. import tracing
from ..runtime import ServiceRuntime
from . import access_routes
from .access import AccessConfig, AccessPolicy, Resolver, enforce
from .auth import DEV_KID_PREFIX, JwksSource, TokenVerifier
from .errors import install_error_handlers
from .openapi import Values, install_problem_responses
from .limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit
from ..db import audit_schema


def token_verifier(settings) -> TokenVerifier:
    """The verifier a service holds: the JWKS when set (production: required, no development key),
    else the development HMAC secret."""
    lifetime = timedelta(seconds=settings.auth_max_token_lifetime_s)
    if settings.auth_jwks:
        jwks = JwksSource(settings.auth_jwks)
        if settings.environment == "production":
            dev = [k for k in jwks.kids if k.startswith(DEV_KID_PREFIX)]
            if dev:
                raise RuntimeError(f"production refuses the development signing key(s) {dev} in {settings.auth_jwks}")
        return TokenVerifier(jwks=jwks, issuer=settings.auth_issuer, audience=settings.auth_audience,
                             max_lifetime=lifetime)
    return TokenVerifier(hmac_secret=settings.auth_secret.get_secret_value(), issuer=settings.auth_issuer,
                         audience=settings.auth_audience, max_lifetime=lifetime)


def create_app(runtime: ServiceRuntime, routers: Sequence[APIRouter] = (), *, title: str, description: str = "",
               policy: Path | None = None, resolvers: dict[str, Resolver] | None = None,
               openapi_values: Values | None = None) -> FastAPI:
    """The service's app. ``policy`` is its access.yaml: every route must have a row there (or in
    the shared rows), else the app refuses to build; ``resolvers`` load a record's scope by the
    path parameter that names it (http/access.py); ``openapi_values`` the sets of codes its data
    defines, listed as enums in its OpenAPI document (http/openapi.py)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            tracing.shutdown()  # flush the spans still queued

    app = FastAPI(title=title, description=description, version=runtime.settings.version, lifespan=lifespan,
                  dependencies=[Depends(enforce)])
    app.state.runtime = runtime
    app.state.token_verifier = token_verifier(runtime.settings)
    app.state.access = AccessConfig(
        policy=AccessPolicy.load(*([policy] if policy else [])), resolvers=dict(resolvers or {}),
        audit_table=f"{audit_schema(runtime.settings.db_schema)}.access_audit")
    install_error_handlers(app)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        labels = (request.method, getattr(route, "path", "unmatched"), str(response.status_code))
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.settings.service_name}

    @app.get("/readyz", tags=["ops"], summary="Readiness: Postgres and Kafka reachable, migrations applied")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        # Consumer lag is read when asked for (the consumers' own fetch state, no broker round trip).
        await refresh_consumer_lag(getattr(runtime, "_subscribers", ()))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in (*routers, access_routes.router):
        app.include_router(router)
    app.state.access.policy.check_routes(app)
    install_problem_responses(app, openapi_values)
    # Outermost (added last): an oversized body is refused with 413 before any handler sees it.
    app.add_middleware(BodySizeLimit, max_bytes=getattr(runtime.settings, "http_max_body_bytes", DEFAULT_MAX_BODY_BYTES))
    # Off unless OTEL_TRACES_EXPORTER is set (tracing.py): then a server span per request.
    if tracing.setup(runtime.settings.service_name):
        tracing.instrument_app(app)
    return app
