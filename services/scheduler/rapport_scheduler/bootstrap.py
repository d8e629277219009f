"""Wires the scheduler: settings → runtime (Postgres, Kafka, relay, consumers, clock, timers) → HTTP app."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.timers import TimedRuntime
from rapport_shared.topics import COURSE

from . import access
from .domain.decider import TIMER_KINDS
from .entrypoints import consumers, http
from .service_layer import handlers
from .settings import SchedulerSettings

MIGRATIONS = Path(__file__).parent / "migrations"
POLICY = Path(__file__).with_name("access.yaml")


def build(settings: SchedulerSettings) -> FastAPI:
    deps = handlers.Deps.from_settings(settings)
    runtime = TimedRuntime(
        settings=settings, migrations_dir=MIGRATIONS, produces=[COURSE], register_handlers=consumers.registrar(deps),
        clock=clock_for(settings),
        timer_handlers={kind: partial(handlers.on_timer, deps=deps) for kind in TIMER_KINDS},
        timer_poll_interval_s=settings.timer_poll_interval_s,
    )
    app = create_app(runtime, [http.router, http.admin_router, http.clock_router], title="Rapport scheduler",
                     description="Courses, the session calendar and the IPT phase state machine; emits rapport.course events.",
                     policy=POLICY, resolvers=access.resolvers(settings.default_organisation or None))
    app.state.scheduler = deps
    app.state.clock_mode = settings.clock
    return app
