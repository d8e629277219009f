"""Wires intake: settings → runtime (Postgres, Kafka, outbox relay, contacts relay, the message bus
with intake's handlers and unit of work) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.instruments import load_catalogue
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.topics import INTAKE

from .adapters.contacts_relay import run_contacts_relay
from .adapters.access import episode_resolver
from .entrypoints import http
from .service_layer import handlers
from .service_layer.unit_of_work import IntakeUnitOfWork
from .settings import IntakeSettings

MIGRATIONS = Path(__file__).parent / "migrations"
ACCESS_POLICY = Path(__file__).with_name("access.yaml")

DESCRIPTION = """Referrals, the IPT intake assessment and eligibility; emits `rapport.intake.completed.v1` /
`rapport.intake.declined.v1` (through the outbox) and publishes contact details, encrypted, only on the
private compacted topic `rapport.private.contacts`. Walkthrough: docs/intake.md."""


def build(settings: IntakeSettings) -> FastAPI:
    rules = settings.rules()  # a malformed rules file is refused here, at start
    catalogue = load_catalogue()
    unknown = {code for codes in rules.required_baseline.values() for code in codes if code not in catalogue}
    if unknown:
        raise ValueError(f"intake rules require unknown instruments: {sorted(unknown)}")
    runtime = ServiceRuntime(settings=settings, migrations_dir=MIGRATIONS, produces=[INTAKE],
                             handlers=handlers.handlers, uow_class=IntakeUnitOfWork,
                             background=[run_contacts_relay], clock=clock_for(settings))
    return create_app(runtime, [http.router], title="Rapport intake", description=DESCRIPTION, policy=ACCESS_POLICY,
                      resolvers={"episode_id": episode_resolver(settings.owner_of_unowned())},
                      openapi_values=http.openapi_values(settings))
