"""Wires intake: settings → runtime (Postgres, Kafka, outbox relay) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.http.app import create_app
from rapport_shared.runtime import ServiceRuntime
from rapport_shared.settings import ServiceSettings
from rapport_shared.topics import INTAKE

from .entrypoints import http

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ServiceSettings) -> FastAPI:
    runtime = ServiceRuntime(settings=settings, migrations_dir=MIGRATIONS, produces=[INTAKE])
    return create_app(runtime, [http.router], title="Rapport intake",
                      description="Referrals, intake assessment and eligibility; emits rapport.intake events.")
