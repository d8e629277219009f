"""Wires the notifier: settings → runtime (Postgres, Kafka, relay, the handler registry as consumer
subscriptions, timers and command bus, clock, contacts reader, sender) → HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from rapport_shared.contracts.outcomes import AlertRaisedV1, AlertResolvedV1
from rapport_shared.clock import clock_for
from rapport_shared.http.app import create_app
from rapport_shared.timers import TimedRuntime
from rapport_shared.topics import NOTIFICATIONS

from .adapters.channels import EmailChannel, LogChannel, SmsChannel, WebhookChannel
from .adapters.contacts import run_contacts_reader
from .adapters.scopes import resolvers
from .domain.rules import Templates
from .entrypoints import http
from .service_layer import handlers
from .service_layer.sender import Sender
from .service_layer.unit_of_work import NotifierUnitOfWork
from .settings import NotifierSettings

MIGRATIONS = Path(__file__).parent / "migrations"
ACCESS_POLICY = Path(__file__).parent / "access.yaml"


def build(settings: NotifierSettings) -> FastAPI:
    templates = Templates(settings.templates_dir)
    runtime = TimedRuntime(
        settings=settings, migrations_dir=MIGRATIONS, produces=[NOTIFICATIONS], clock=clock_for(settings),
        handlers=handlers.handlers, uow_class=NotifierUnitOfWork,
        timer_poll_interval_s=settings.timer_poll_interval_s,
        # The safety lane: alerts are consumed by their own group and pool, never behind routine
        # records (exactly once through the shared inbox; docs/architecture.md "Safety lane"). The
        # resolution rides with the raise: same topic and key, so the lane keeps their order and a
        # resolution can never be applied before the page it stops.
        priority=[AlertRaisedV1, AlertResolvedV1],
    )
    channels = {"log": LogChannel(), "email": EmailChannel(settings.smtp_host, settings.smtp_port_or_default, settings.smtp_from,
                                                          settings.smtp_timeout_s or settings.send_timeout_s,
                                                          settings.email_status_url,
                                                          settings.email_status_token.get_secret_value(),
                                                          tls=settings.smtp_tls, username=settings.smtp_username,
                                                          password=settings.smtp_password.get_secret_value(),
                                                          ca_file=settings.smtp_ca_file),
                "sms": SmsChannel(settings.sms_url, settings.sms_token.get_secret_value(), settings.send_timeout_s),
                "webhook": WebhookChannel(settings.send_timeout_s, allow_http=settings.webhook_allow_http,
                                          allow_networks=settings.webhook_networks())}
    sender = Sender(runtime, settings, channels, templates)
    runtime.background.append(sender.run)
    if settings.contacts_enabled:
        keyring = settings.keyring()

        async def contacts(rt):
            await run_contacts_reader(rt, keyring)
        runtime.background.append(contacts)
    app = create_app(runtime, [http.router], title="Rapport notifier",
                     description="Reminders, questionnaire requests, clinician alerts and partner webhooks, each "
                                 "delivered once per idempotency key; emits rapport.notifications events.",
                     policy=ACCESS_POLICY, resolvers=resolvers(settings),
                     openapi_values=http.openapi_values(settings))
    app.state.settings = settings
    app.state.templates = templates
    app.state.sender = sender
    return app
