"""The four services as separate processes, started as the ``system`` test fixture starts them
(``rapport_testing.services.build_system``: own roles and schemas, migrate on start, JSON
logs to files, relay poll interval 0.5 s), plus a loopback SMTP server (the notifier's test
support) so that the clinician's notice is a real email and its ``notification.delivered.v1``
follows a real SMTP exchange. Tokens are signed by the development issuer
(deploy/dev-keys/issuer.jwk.json, organisation ``BENCH_ORG``); the services verify them with its
public JWKS (RAPPORT_AUTH_JWKS), as docker-compose's do."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import httpx

from rapport_testing.notifier import SmtpServer
from rapport_shared import db
from rapport_shared.http.auth import TokenIssuer
from rapport_testing.kafka import wait_caught_up
from rapport_testing.services import SERVICES, System, build_system
from rapport_shared.topics import COURSE, INTAKE, OUTCOMES, PRIVATE_CONTACTS, SHARED_TOPICS

DEV_KEYS = Path(__file__).resolve().parents[1] / "deploy" / "dev-keys"
BENCH_ORG = "org-bench"

# The live consumer groups and what they read.
GROUPS = (("rapport-scheduler", (INTAKE, OUTCOMES)), ("rapport-outcomes", (INTAKE, COURSE)),
          ("rapport-notifier", SHARED_TOPICS), ("rapport-notifier-contacts", (PRIVATE_CONTACTS,)))


@dataclass
class Running:
    system: System
    smtp: SmtpServer
    tokens: TokenIssuer
    admin_dsn: str
    bootstrap: str

    def token(self, sub: str, role: str) -> str:
        return self.tokens.issue(sub, [role])

    def register_clinician(self, clinician: str) -> None:
        """An admin records the clinician's email: their notices go to the SMTP server."""
        r = httpx.put(f"{self.system['notifier'].url}/v1/clinicians/{clinician}", timeout=30,
                      headers={"Authorization": f"Bearer {self.token('admin', 'admin')}"},
                      json={"email": f"{clinician}@clinic.test", "language": "en", "channels": ["email"]})
        r.raise_for_status()


@asynccontextmanager
async def running_services(stack, log_dir: Path) -> AsyncIterator[Running]:
    passwords = {name: secrets.token_urlsafe(12) for name in SERVICES}
    for name in SERVICES:  # as `rapport-admin provision` (the db_passwords fixture)
        await db.provision(stack.admin_dsn, "rapport", name, passwords[name])
    tokens = TokenIssuer.from_file(DEV_KEYS / "issuer.jwk.json", org=BENCH_ORG)
    smtp = SmtpServer().start()
    system = build_system(admin_dsn=stack.admin_dsn, kafka_bootstrap=stack.bootstrap, passwords=passwords,
                          jwks=str(DEV_KEYS / "jwks.json"), log_dir=log_dir / "services",
                          extra_env={"RAPPORT_SMTP_HOST": "127.0.0.1", "RAPPORT_SMTP_PORT": str(smtp.port)})
    try:
        await asyncio.to_thread(system.start_all)
        yield Running(system, smtp, tokens, stack.admin_dsn, stack.bootstrap)
    finally:
        await asyncio.to_thread(system.stop_all)
        smtp.stop()


async def caught_up(bootstrap: str, timeout: float = 300) -> None:
    """Every live consumer group has read everything on its topics (the cohort is processed). Twice:
    a group that caught up can be handed new records by another that was still catching up."""
    for group, topics in GROUPS * 2:
        for topic in topics:
            await wait_caught_up(bootstrap, group, topic, timeout=timeout)

