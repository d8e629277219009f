"""``rapport-<svc> replay run|verify|swap|drop|describe``: the console side of :mod:`.replay`.

Lives in each service's own command (not in the broker-only ``rapport`` tool) because a replay
runs the service's code; ``rapport replay <svc> ...`` hands over to it."""

from __future__ import annotations

import asyncio
import importlib
import json
from typing import Any, Callable

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from . import replay as R
from .settings import ServiceSettings

out = Console()
err = Console(stderr=True)


def projection_of(service: str) -> R.Projection:
    return importlib.import_module(f"rapport_{service}.projection").PROJECTION


def describe(service: str, p: R.Projection) -> None:
    out.print(f"[bold]{service}[/bold]: {p.note}")
    for t in p.tables:
        cols = "all columns" if t.columns is None else "columns " + ", ".join(t.columns)
        extra = (f"; not hashed: {', '.join(t.exclude)}" if t.exclude else "") + (f"; rows where {t.rows('row')}" if t.where else "")
        out.print(f"  {t.name} (key {', '.join(t.key)}): {cols}{extra}")
    if p.seed:
        out.print(f"  copied from live before replaying (read by the handlers): {', '.join(p.seed)}")


def print_checks(checks: list[R.TableCheck], live: str, shadow: str, as_json: bool = False) -> None:
    if as_json:
        out.print_json(json.dumps([{**c.__dict__, "equal": c.equal} for c in checks]))
        return
    t = RichTable(title=f"projection: {shadow} against {live}")
    for col in ("table", "rows live", "rows shadow", "hash live", "hash shadow", ""):
        t.add_column(col)
    for c in checks:
        t.add_row(c.table, str(c.live_rows), str(c.shadow_rows), c.live_hash[:12], c.shadow_hash[:12],
                  "[green]equal[/green]" if c.equal else "[red]DIFFERENT[/red]")
    out.print(t)


async def _verify(settings: ServiceSettings, p: R.Projection, shadow: str) -> list[R.TableCheck]:
    conn = await asyncpg.connect(settings.database_dsn)
    try:
        meta = await R.read_meta(conn, shadow)
        return await R.verify(conn, p, meta["live_schema"], shadow)
    finally:
        await conn.close()


def main(service: str, settings: ServiceSettings, build_app: Callable, args: Any) -> int:
    p = projection_of(service)
    try:
        if args.replay_cmd == "describe":
            describe(service, p)
            return 0
        if args.replay_cmd == "run":
            return _run(service, settings, build_app, p, args)
        if args.replay_cmd == "verify":
            checks = asyncio.run(_verify(settings, p, args.shadow))
            print_checks(checks, settings.db_schema, args.shadow, args.json)
            return 0 if all(c.equal for c in checks) else 1
        if args.replay_cmd == "swap":
            _need_admin(args)
            plans, backup = asyncio.run(R.swap(settings, p, admin_dsn=args.admin_dsn, shadow=args.shadow, apply=args.apply))
            t = RichTable(title=("swapped" if backup else "dry run: would swap") + f" {args.shadow} → {settings.db_schema}")
            for col in ("table", "rows updated", "rows inserted", "rows deleted"):
                t.add_column(col)
            for s in plans:
                t.add_row(s.table, str(s.updated), str(s.inserted), str(s.deleted))
            out.print(t)
            out.print(f"previous live tables kept in schema {backup}" if backup else "dry run: nothing changed; add --apply")
            return 0
        if args.replay_cmd == "drop":
            _need_admin(args)
            kept = asyncio.run(R.drop_shadow(args.admin_dsn, args.shadow, settings.db_schema, R.kafka_conn(settings)))
            out.print(f"dropped {args.shadow} and its replay group's empty dead-letter topics"
                      + (f"; kept (not empty): {', '.join(kept)}" if kept else ""))
            return 0
    except R.ReplayError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    except asyncpg.PostgresError as exc:  # e.g. another service's shadow: its role has no rights there
        err.print(f"[red]error:[/red] Postgres refused: {exc}")
        return 2
    raise AssertionError(args.replay_cmd)


def _need_admin(args: Any) -> None:
    if not args.admin_dsn:
        raise R.ReplayError("--admin-dsn or RAPPORT_ADMIN_DSN is required (it creates, backs up and drops schemas)")


def _run(service: str, settings: ServiceSettings, build_app: Callable, p: R.Projection, args: Any) -> int:
    from .tools.kafka_ops import parse_time

    if not p.tables:
        raise R.ReplayError(p.note)
    _need_admin(args)
    shadow, group = R.default_names(settings)
    shadow = args.shadow or shadow

    async def go() -> dict[str, Any]:
        g = args.group or group
        conn = await asyncpg.connect(settings.database_dsn)
        try:  # a resumed shadow keeps the group it was built with
            if await conn.fetchval(f"SELECT to_regclass('{shadow}.{R.META}') IS NOT NULL"):
                g = (await R.read_meta(conn, shadow))["group"]
        finally:
            await conn.close()
        with Progress(TextColumn(f"replaying {service} into {shadow}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=False) as bar:
            task = bar.add_task("records", total=None)
            return await R.run(settings, build_app, p, admin_dsn=args.admin_dsn, shadow=shadow, group=g,
                               since=parse_time(args.since) if args.since else None, timeout_s=args.timeout,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))

    summary = asyncio.run(go())
    out.print(f"replayed {summary['records']} record(s) into {summary['shadow']} with group {summary['group']}"
              f" in {summary['seconds']} s; nothing published, nothing sent")
    if args.no_verify:
        return 0
    checks = asyncio.run(_verify(settings, p, shadow))
    print_checks(checks, settings.db_schema, shadow)
    return 0 if all(c.equal for c in checks) else 1
