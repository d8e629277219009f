"""Wires the console: settings → runtime (Postgres, Kafka consumers, the change feed) → pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.settings import ServiceSettings

from .adapters import repository
from .adapters.changes import ChangeFeed
from .adapters.oidc import OidcClient
from .entrypoints import http, session
from .service_layer import handlers
from .service_layer.unit_of_work import ConsoleUnitOfWork
from .settings import ConsoleSettings

MIGRATIONS = Path(__file__).parent / "migrations"
ACCESS_POLICY = Path(__file__).parent / "access.yaml"


def build(settings: ServiceSettings) -> FastAPI:
    settings = settings if isinstance(settings, ConsoleSettings) else ConsoleSettings(**settings.model_dump())
    feed = ChangeFeed(repository.change_channel(settings.db_schema))

    async def change_feed(runtime: ServiceRuntime) -> None:
        await feed.run(runtime.pool)

    # The console publishes nothing (produces=[]): its outbox stays empty; actions go to the
    # owning services' HTTP APIs.
    runtime = ServiceRuntime(settings=settings, migrations_dir=MIGRATIONS, produces=[], clock=clock_for(settings),
                             handlers=handlers.handlers, uow_class=ConsoleUnitOfWork, background=[change_feed])
    app = create_app(runtime, http.routers, title="Rapport console",
                     description="The clinician console: caseload, episode timeline, score charts, safety alerts "
                                 "and cohort rates as web pages, built from the shared topics.",
                     policy=ACCESS_POLICY, resolvers={"episode_id": repository.episode_scope})
    app.state.changes = feed
    app.state.templates = http.environment()
    app.state.session_keys = session.SessionKeys(settings.session_secret.get_secret_value())
    app.state.oidc = OidcClient(
        issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value(), redirect_uri=settings.oidc_redirect_uri,
        scopes=settings.oidc_scopes, timeout_s=settings.owner_timeout_s) if settings.sign_in == "oidc" else None
    http.install_page_handlers(app)
    app.mount("/static", StaticFiles(directory=http.STATIC), name="static")
    app.add_middleware(session.CookieSession, cookie_name=settings.cookie_name,
                       verifier_of=lambda: app.state.token_verifier)
    return app
