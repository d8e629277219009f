"""Wires the outcomes: settings → runtime (Postgres, Kafka, relay, handlers) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.settings import ServiceSettings
from rapport_shared.topics import OUTCOMES

from .adapters import repository
from .adapters.erasures import run_erasure_reader
from .entrypoints import http
from .service_layer import handlers
from .service_layer.unit_of_work import OutcomesUnitOfWork, policy_of

MIGRATIONS = Path(__file__).parent / "migrations"
ACCESS_POLICY = Path(__file__).parent / "access.yaml"


def build(settings: ServiceSettings) -> FastAPI:
    policy_of(settings)  # a misconfigured policy fails here, at start, not at the first event
    runtime = ServiceRuntime(settings=settings, migrations_dir=MIGRATIONS, produces=[OUTCOMES],
                             handlers=handlers.handlers, uow_class=OutcomesUnitOfWork, clock=clock_for(settings),
                             background=[run_erasure_reader])  # erasure notices (docs/privacy.md)
    return create_app(runtime, http.routers, title="Rapport outcomes",
                      description="Scored submissions, change classification, safety and review alerts, cohort "
                                  "reports and FHIR export; emits rapport.outcomes events.",
                      policy=ACCESS_POLICY,
                      resolvers={"episode_id": repository.episode_scope, "alert_id": repository.alert_scope})
