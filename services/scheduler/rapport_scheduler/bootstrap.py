"""Wires the scheduler: settings → runtime (Postgres, Kafka, relay, the handlers' subscriptions,
clock, timers, message bus) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.timers import TimedRuntime
from rapport_shared.topics import COURSE

from . import access
from .entrypoints import http
from .service_layer.handlers import handlers
from .service_layer.unit_of_work import SchedulerUnitOfWork
from .settings import SchedulerSettings

MIGRATIONS = Path(__file__).parent / "migrations"
POLICY = Path(__file__).with_name("access.yaml")


def build(settings: SchedulerSettings) -> FastAPI:
    runtime = TimedRuntime(
        settings=settings, migrations_dir=MIGRATIONS, produces=[COURSE], clock=clock_for(settings),
        handlers=handlers, uow_class=SchedulerUnitOfWork, timer_poll_interval_s=settings.timer_poll_interval_s,
    )
    app = create_app(runtime, [http.router, http.admin_router, http.clock_router], title="Rapport scheduler",
                     description="Courses, the session calendar and the IPT phase state machine; emits rapport.course events.",
                     policy=POLICY, resolvers=access.resolvers(settings.default_organisation or None))
    app.state.clock_mode = settings.clock
    return app
