"""Wires the scheduler: settings → runtime (Postgres, Kafka, relay, consumers) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.http.app import create_app
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.settings import ServiceSettings
from rapport_shared.topics import COURSE

from .entrypoints import consumers, http

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ServiceSettings) -> FastAPI:
    runtime = ServiceRuntime(settings=settings, migrations_dir=MIGRATIONS, produces=[COURSE], register_handlers=consumers.register)
    return create_app(runtime, [http.router], title="Rapport scheduler",
                      description="Courses, the session calendar and the IPT phase state machine; emits rapport.course events.")
