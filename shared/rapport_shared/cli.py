"""Command lines: each service's ``rapport-<svc> migrate|run|openapi`` and ``rapport-admin``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Callable

from . import db
from .http.auth import TokenAuthority
from .logging import configure_logging
from .settings import ServiceSettings

SERVICES = ("intake", "scheduler", "outcomes", "notifier")


def service_main(name: str, load_settings: Callable[[], ServiceSettings], build_app: Callable, argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"rapport-{name}", description=f"Rapport {name} service")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply this service's SQL migrations to its schema, then exit")
    sub.add_parser("run", help="run the service (HTTP API, consumers, outbox relay)")
    sub.add_parser("openapi", help="print the OpenAPI document")
    _replay_parser(sub)
    args = p.parse_args(argv)
    settings = load_settings()
    configure_logging(name, settings.log_format, settings.log_level)
    if args.cmd == "migrate":
        return asyncio.run(_migrate(settings, build_app))
    if args.cmd == "replay":
        from .replay_cli import main as replay_main

        return replay_main(name, settings, build_app, args)
    app = build_app(settings)
    if args.cmd == "openapi":
        print(json.dumps(app.openapi(), indent=2))
        return 0
    import uvicorn

    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning", access_log=False)
    return 0


def _replay_parser(sub) -> None:
    rp = sub.add_parser("replay", help="rebuild this service's projection from Kafka into a shadow schema (docs/replay.md)")
    rsub = rp.add_subparsers(dest="replay_cmd", required=True)
    admin = {"default": os.environ.get("RAPPORT_ADMIN_DSN"), "help": "Postgres admin DSN (or RAPPORT_ADMIN_DSN)"}
    run = rsub.add_parser("run", help="replay into a shadow schema with a fresh consumer group (resumes an existing shadow)")
    run.add_argument("--shadow", help="shadow schema (default <schema>_replay_<UTC timestamp>)")
    run.add_argument("--group", help="consumer group (default <group>-replay-<UTC timestamp>; a resumed shadow keeps its own)")
    run.add_argument("--since", help="start at this time (RFC 3339 or epoch ms) instead of the beginning")
    run.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    run.add_argument("--no-verify", action="store_true", help="do not compare with the live projection at the end")
    run.add_argument("--admin-dsn", **admin)
    ver = rsub.add_parser("verify", help="content hash per projection table, shadow against live (exit 1 if any differ)")
    ver.add_argument("--shadow", required=True)
    ver.add_argument("--json", action="store_true")
    sw = rsub.add_parser("swap", help="replace the live projection with the shadow's (dry run unless --apply)")
    sw.add_argument("--shadow", required=True)
    sw.add_argument("--apply", action="store_true")
    sw.add_argument("--admin-dsn", **admin)
    dr = rsub.add_parser("drop", help="drop a shadow schema")
    dr.add_argument("--shadow", required=True)
    dr.add_argument("--admin-dsn", **admin)
    rsub.add_parser("describe", help="print what this service's projection is")


async def _migrate(settings: ServiceSettings, build_app: Callable) -> int:
    runtime = build_app(settings).state.runtime
    conn = await __import__("asyncpg").connect(settings.database_dsn)
    try:
        applied = await db.migrate(conn, settings.db_schema, runtime.migrations)
    finally:
        await conn.close()
    print(json.dumps({"service": settings.service_name, "applied": applied}))
    return 0


def admin_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rapport-admin", description="Rapport operator commands")
    sub = p.add_subparsers(dest="cmd", required=True)
    prov = sub.add_parser("provision", help="create each service's Postgres role and schema (admin DSN)")
    prov.add_argument("--admin-dsn", default=os.environ.get("RAPPORT_ADMIN_DSN"))
    prov.add_argument("--database", default=os.environ.get("RAPPORT_DATABASE", "rapport"))
    prov.add_argument("--services", nargs="*", default=list(SERVICES))
    tok = sub.add_parser("token", help="issue a signed bearer token (development and tests)")
    tok.add_argument("--sub", required=True)
    tok.add_argument("--role", action="append", required=True)
    tok.add_argument("--hours", type=float, default=8)
    tok.add_argument("--secret", default=os.environ.get("RAPPORT_AUTH_SECRET", ServiceSettings.model_fields["auth_secret"].default.get_secret_value()))
    args = p.parse_args(argv)
    if args.cmd == "token":
        print(TokenAuthority(args.secret).issue(args.sub, args.role, timedelta(hours=args.hours)))
        return 0
    if not args.admin_dsn:
        p.error("--admin-dsn or RAPPORT_ADMIN_DSN is required")

    async def go() -> None:
        for svc in args.services:
            password = os.environ.get(f"RAPPORT_DB_PASSWORD_{svc.upper()}")
            if not password:
                raise SystemExit(f"RAPPORT_DB_PASSWORD_{svc.upper()} is not set")
            await db.provision(args.admin_dsn, args.database, svc, password)
            print(f"provisioned role rapport_{svc} and schema {svc}")

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(admin_main())
