"""The HTTP app of a service: its API routers plus health, readiness and metrics."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Sequence

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..metrics import HTTP_REQUESTS
from ..runtime import ServiceRuntime
from .auth import Role, TokenAuthority, require
from .errors import install_error_handlers


def create_app(runtime: ServiceRuntime, routers: Sequence[APIRouter] = (), *, title: str, description: str = "") -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version=runtime.settings.version, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.token_authority = TokenAuthority(
        runtime.settings.auth_secret.get_secret_value(), runtime.settings.auth_issuer, runtime.settings.auth_audience
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        HTTP_REQUESTS.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.settings.service_name}

    @app.get("/readyz", tags=["ops"], summary="Readiness: Postgres and Kafka reachable, migrations applied")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics",
             dependencies=[Depends(require(Role.metrics, Role.operator, Role.admin))])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app
