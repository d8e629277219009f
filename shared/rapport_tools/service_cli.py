"""``rapport-<svc> migrate|run|openapi|replay``: each service's command line.

A service's ``entrypoints/cli.py`` calls :func:`service_main` with its settings loader and app
factory. A Typer application in the style of ``rapport`` (cli.py): every option has help,
``--debug`` is global, and a Postgres that cannot be reached, a missing file or a refusal is one
line on stderr with exit code 2 (cli_common.py). ``service_main(argv)`` returns the exit code (0, or
1 where a command reports a difference) and exits (SystemExit) on --help and on errors."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any, Callable

import asyncpg
import typer

from rapport_shared import db
from rapport_shared.logging import configure_logging
from rapport_shared.settings import ServiceSettings

from . import cli_common


def service_app(name: str, load_settings: Callable[[], ServiceSettings], build_app: Callable) -> typer.Typer:
    """``rapport-<name>``: migrate | run | openapi | replay ... (Typer, the style of ``rapport``)."""
    prog = f"rapport-{name}"
    app = cli_common.typer_app(f"Rapport {name} service: migrate its schema, run it, print its OpenAPI document, rebuild its "
                 "projection by replay (docs/replay.md). Settings come from the RAPPORT_* environment.")

    @app.callback()
    def _root(debug: bool = cli_common.debug_option()) -> None:
        cli_common.set_debug(debug)

    def settings_(quiet: bool = True) -> ServiceSettings:
        try:
            settings = load_settings()
            _check_token_verification(settings)
        except (ValueError, RuntimeError, OSError) as exc:
            # One clear line, not a traceback: a refused configuration (production with an HMAC secret,
            # without a JWKS, with a development key; an unreadable JWKS) is the operator's to fix.
            # ValidationError's own text would also print the input values, secrets included.
            if cli_common.debug():
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            print(f"{prog}: refusing to start: {_config_error(exc)}", file=sys.stderr)
            raise typer.Exit(2)
        configure_logging(name, settings.log_format, settings.log_level)
        if quiet:  # one-shot commands report failures themselves; the running service logs them
            cli_common.quiet_libraries()
        return settings

    @app.command("migrate")
    @cli_common.leaf
    def migrate(
        status: bool = typer.Option(False, "--status", help="only show which migrations are applied and which "
                                                            "pending (changes nothing; exit 0)"),
        as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP + " (migrate prints JSON anyway)"),
    ) -> int:
        """Apply this service's SQL migrations to its schema, then exit (--status: list them)."""
        settings = settings_()
        if status:
            report = cli_common.guard(prog, lambda: asyncio.run(_migration_status(settings, build_app)),
                                      postgres=settings.database_dsn)
            _print_status(report, as_json)
            return 0
        applied = cli_common.guard(prog, lambda: asyncio.run(_migrate(settings, build_app)),
                                   postgres=settings.database_dsn)
        print(json.dumps({"service": settings.service_name, "applied": applied}))
        return 0

    @app.command("run")
    @cli_common.leaf
    def run() -> int:
        """Run the service (HTTP API, consumers, outbox relay)."""
        settings = settings_(quiet=False)
        app_ = build_app(settings)
        import uvicorn  # noqa: PLC0415

        uvicorn.run(app_, host=settings.http_host, port=settings.http_port, log_level="warning", access_log=False)
        return 0

    @app.command("openapi")
    @cli_common.leaf
    def openapi() -> int:
        """Print the OpenAPI document (JSON)."""
        settings = settings_()
        print(json.dumps(build_app(settings).openapi(), indent=2))
        return 0

    from .replay_cli import replay_app  # noqa: PLC0415 (Rich and the replay machinery: only for replay)

    app.add_typer(replay_app(name, prog, settings_, build_app), name="replay")
    return app


def service_main(name: str, load_settings: Callable[[], ServiceSettings], build_app: Callable,
                 argv: list[str] | None = None) -> int:
    return cli_common.invoke(service_app(name, load_settings, build_app), f"rapport-{name}", argv)


def _check_token_verification(settings: ServiceSettings) -> None:
    """Load the service's token verifier once before anything else (the JWKS, production's refusal
    of development keys), so that a refused key is reported as configuration, not as a traceback."""
    from rapport_shared.http.app import token_verifier  # noqa: PLC0415 (FastAPI is not needed to parse arguments)

    token_verifier(settings)


def _config_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic's ValidationError: the messages, without the input values
        parts = []
        for e in errors():
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{('RAPPORT_' + loc.upper() + ': ') if loc else ''}{msg}")
        return "; ".join(parts)
    return str(exc)


async def _migrate(settings: ServiceSettings, build_app: Callable) -> list[str]:
    runtime = build_app(settings).state.runtime
    conn = await asyncpg.connect(settings.database_dsn, timeout=cli_common.PG_CONNECT_TIMEOUT_S)
    try:
        return await db.migrate(conn, settings.db_schema, runtime.migrations)
    finally:
        await conn.close()


async def _migration_status(settings: ServiceSettings, build_app: Callable) -> dict[str, Any]:
    """Which of the service's migrations its schema has (and when), which are pending, and any
    applied one whose file changed since (``migrate`` would refuse: never edit an applied file)."""
    migrations = build_app(settings).state.runtime.migrations
    conn = await asyncpg.connect(settings.database_dsn, timeout=cli_common.PG_CONNECT_TIMEOUT_S)
    try:
        table = f"{db.ident(settings.db_schema)}.schema_migrations"
        rows = []
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            rows = await conn.fetch(f"SELECT version, checksum, applied_at FROM {table} ORDER BY version")
    finally:
        await conn.close()
    done = {r["version"]: r for r in rows}
    known = {m.version: m for m in migrations}
    order = [m.version for m in migrations if m.version in done] + [v for v in done if v not in known]
    applied = [{"version": v, "applied_at": done[v]["applied_at"].isoformat(),
                "changed": v in known and known[v].checksum != done[v]["checksum"]} for v in order]
    return {"service": settings.service_name, "schema": settings.db_schema, "applied": applied,
            "pending": [m.version for m in migrations if m.version not in done],
            "unknown": [v for v in done if v not in known]}


def _print_status(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    t = Table(title=f"Migrations of {report['service']} (schema {report['schema']})", title_justify="left")
    for col in ("version", "state", "applied at"):
        t.add_column(col)
    for a in report["applied"]:
        t.add_row(a["version"], "[red]applied, file changed since[/red]" if a["changed"] else "[green]applied[/green]",
                  a["applied_at"])
    for v in report["pending"]:
        t.add_row(v, "[yellow]pending[/yellow]", "")
    for v in report["unknown"]:
        t.add_row(v, "applied, no such file here (a newer version's?)", "")
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(t)
    print(f"{len(report['applied'])} applied, {len(report['pending'])} pending"
          + ("; `migrate` applies them" if report["pending"] else ""), file=sys.stderr)
