"""``rapport-<svc> replay run|verify|swap|drop|describe``: the console side of :mod:`.replay`.

Lives in each service's own command (not in the broker-only ``rapport`` tool) because a replay
runs the service's code; ``rapport replay <svc> ...`` hands over to it. Commands that change
something (``swap``, ``drop``) are dry runs unless ``--apply``; each takes ``--json``; errors are
one line on stderr and exit code 2 (cli_common.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, Optional

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text
from rich.table import Table as RichTable

from rapport_shared.settings import ServiceSettings

from . import cli_common
from . import replay as R
from . import services as registry
from .cli_common import CONTEXT_SETTINGS, PG_CONNECT_TIMEOUT_S

out = Console()
err = Console(stderr=True)


def projection_of(service: str) -> R.Projection:
    return registry.get(service).load("projection")


def describe(service: str, p: R.Projection) -> None:
    out.print(f"[bold]{service}[/bold]: {p.note}")
    for t in p.tables:
        cols = "all columns" if t.columns is None else "columns " + ", ".join(t.columns)
        extra = (f"; not hashed: {', '.join(t.exclude)}" if t.exclude else "") + (f"; rows where {t.rows('row')}" if t.where else "")
        out.print(f"  {t.name} (key {', '.join(t.key)}): {cols}{extra}")
    if p.seed:
        out.print(f"  copied from live before replaying (read by the handlers): {', '.join(p.seed)}")


def describe_json(service: str, p: R.Projection) -> dict[str, Any]:
    return {"service": service, "note": p.note,
            "tables": [{"name": t.name, "key": list(t.key), "columns": None if t.columns is None else list(t.columns),
                        "exclude": list(t.exclude), "where": t.rows("row") if t.where else None} for t in p.tables],
            "seed": list(p.seed)}


def checks_json(checks: list[R.TableCheck]) -> list[dict[str, Any]]:
    return [{**c.__dict__, "equal": c.equal} for c in checks]


def print_checks(checks: list[R.TableCheck], live: str, shadow: str, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(checks_json(checks), indent=2))
        return
    t = RichTable(title=f"projection: {shadow} against {live}")
    for col in ("table", "rows live", "rows shadow", "hash live", "hash shadow", ""):
        t.add_column(col)
    for c in checks:
        t.add_row(c.table, str(c.live_rows), str(c.shadow_rows), c.live_hash[:12], c.shadow_hash[:12],
                  "[green]equal[/green]" if c.equal else "[red]DIFFERENT[/red]")
    out.print(t)
    for c in checks:
        if c.differing:  # where to look: the keys, never the values
            more = " (first ones)" if len(c.differing) >= R.DIFFERING_SHOWN else ""
            out.print(f"{c.table}: rows that differ{more}, by key: {', '.join(c.differing)}")


async def _verify(settings: ServiceSettings, p: R.Projection, shadow: str) -> list[R.TableCheck]:
    conn = await asyncpg.connect(settings.database_dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        meta = await R.read_meta(conn, shadow)
        return await R.verify(conn, p, meta["live_schema"], shadow)
    finally:
        await conn.close()


SHADOW = typer.Option(..., "--shadow", help="the shadow schema (as `replay run` printed it)")
APPLY_HELP = "do it (default: --dry-run, which shows what would change and changes nothing)"


def _admin_option() -> Any:
    return typer.Option(None, "--admin-dsn", envvar="RAPPORT_ADMIN_DSN",
                        help="Postgres admin DSN: creates, backs up and drops schemas")


def replay_app(service: str, prog: str, load_settings: Callable[[], ServiceSettings], build_app: Callable) -> typer.Typer:
    """``rapport-<service> replay run|verify|swap|drop|describe``."""
    app = typer.Typer(no_args_is_help=True, context_settings=CONTEXT_SETTINGS, pretty_exceptions_enable=False,
                      help="Rebuild this service's projection from Kafka into a shadow schema, compare it with the "
                           "live one, swap it in (docs/replay.md).")

    def guarded(settings: ServiceSettings, work: Callable[[], Any], dsn: str | None = None) -> Any:
        try:
            return cli_common.guard(prog, work, postgres=dsn or settings.database_dsn, kafka=settings.kafka_bootstrap)
        except KeyboardInterrupt:
            raise typer.Exit(130)

    def need_admin(admin_dsn: str | None) -> str:
        if not admin_dsn:
            cli_common.fail(prog, "--admin-dsn or RAPPORT_ADMIN_DSN is required (it creates, backs up and drops schemas)")
        return admin_dsn

    @app.command("describe")
    @cli_common.leaf
    def describe_(as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP)) -> int:
        """Print what this service's projection is: its tables, keys, hashed columns."""
        p = projection_of(service)
        if as_json:
            print(json.dumps(describe_json(service, p), indent=2))
        else:
            describe(service, p)
        return 0

    @app.command("run")
    @cli_common.leaf
    def run_(
        shadow: Optional[str] = typer.Option(None, "--shadow", help="shadow schema (default <schema>_replay_<UTC "
                                                                    "timestamp>; an existing one is resumed)"),
        group: Optional[str] = typer.Option(None, "--group", help="consumer group (default <group>-replay-<UTC "
                                                                  "timestamp>; a resumed shadow keeps its own)"),
        since: Optional[str] = typer.Option(None, "--since", help="start at this time (RFC 3339 or epoch ms) instead "
                                                                  "of the beginning"),
        timeout: float = typer.Option(3600, "--timeout", help="give up after this many seconds"),
        no_verify: bool = typer.Option(False, "--no-verify", help="do not compare with the live projection at the end"),
        admin_dsn: Optional[str] = _admin_option(),
        as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP + ": the summary and the checks"),
    ) -> int:
        """Replay into a shadow schema with a fresh consumer group (resumes an existing shadow);
        nothing is published, nothing sent. Exit 1 if the shadow differs from the live projection."""
        from rapport_tools.kafka_ops import parse_time  # noqa: PLC0415

        p = projection_of(service)
        settings = load_settings()
        if not p.tables:
            cli_common.fail(prog, p.note)
        admin = need_admin(admin_dsn)
        try:
            start = parse_time(since) if since else None
        except ValueError:
            cli_common.fail(prog, f"--since {since!r} is not an RFC 3339 time or epoch milliseconds")
        default_shadow, default_group = R.default_names(settings)
        target = shadow or default_shadow
        summary = guarded(settings, lambda: asyncio.run(_run(service, settings, build_app, p, admin, target,
                                                             group or default_group, start, timeout)))
        checks = None if no_verify else guarded(settings, lambda: asyncio.run(_verify(settings, p, target)))
        equal = checks is None or all(c.equal for c in checks)
        if as_json:
            print(json.dumps({"replayed": summary, "checks": None if checks is None else checks_json(checks),
                              "equal": None if checks is None else equal}, indent=2, default=str))
        else:
            out.print(f"replayed {summary['records']} record(s) into {summary['shadow']} with group {summary['group']}"
                      f" in {summary['seconds']} s; nothing published, nothing sent")
            if checks is not None:
                print_checks(checks, settings.db_schema, target)
        return 0 if equal else 1

    @app.command("verify")
    @cli_common.leaf
    def verify_(shadow: str = SHADOW, as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP)) -> int:
        """Content hash per projection table, shadow against live (exit 1 if any differ)."""
        p = projection_of(service)
        settings = load_settings()
        checks = guarded(settings, lambda: asyncio.run(_verify(settings, p, shadow)))
        print_checks(checks, settings.db_schema, shadow, as_json)
        return 0 if all(c.equal for c in checks) else 1

    @app.command("swap")
    @cli_common.leaf
    def swap_(
        shadow: str = SHADOW,
        apply: bool = typer.Option(False, "--apply/--dry-run", help=APPLY_HELP),
        admin_dsn: Optional[str] = _admin_option(),
        as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP),
    ) -> int:
        """Replace the live projection with the shadow's (dry run unless --apply); the previous live
        tables are kept in a backup schema. Refused while the live service consumes."""
        p = projection_of(service)
        settings = load_settings()
        admin = need_admin(admin_dsn)
        plans, backup = guarded(settings, lambda: asyncio.run(R.swap(settings, p, admin_dsn=admin, shadow=shadow,
                                                                     apply=apply)), dsn=admin)
        if as_json:
            print(json.dumps({"applied": bool(backup), "shadow": shadow, "live": settings.db_schema, "backup": backup,
                              "tables": [s.__dict__ for s in plans]}, indent=2))
            return 0
        t = RichTable(title=("swapped" if backup else "dry run: would swap") + f" {shadow} → {settings.db_schema}")
        for col in ("table", "rows updated", "rows inserted", "rows deleted"):
            t.add_column(col)
        for s in plans:
            t.add_row(s.table, str(s.updated), str(s.inserted), str(s.deleted))
        out.print(t)
        out.print(f"previous live tables kept in schema {backup}" if backup else "dry run: nothing changed; add --apply")
        return 0

    @app.command("drop")
    @cli_common.leaf
    def drop_(
        shadow: str = SHADOW,
        apply: bool = typer.Option(False, "--apply/--dry-run", help=APPLY_HELP),
        admin_dsn: Optional[str] = _admin_option(),
        as_json: bool = typer.Option(False, "--json", help=cli_common.JSON_HELP),
    ) -> int:
        """Drop a shadow schema and its replay group's empty dead-letter topics (dry run unless --apply)."""
        settings = load_settings()
        admin = need_admin(admin_dsn)
        kc = R.kafka_conn(settings)
        if apply:
            kept = guarded(settings, lambda: asyncio.run(R.drop_shadow(admin, shadow, settings.db_schema, kc)),
                           dsn=admin)
            plan = {"applied": True, "shadow": shadow, "kept_topics": kept}
            text = (f"dropped {shadow} and its replay group's empty dead-letter topics"
                    + (f"; kept (not empty): {', '.join(kept)}" if kept else ""))
        else:
            plan = guarded(settings, lambda: asyncio.run(_drop_plan(admin, shadow, settings.db_schema, kc)), dsn=admin)
            text = (f"dry run: would drop schema {shadow} (group {plan['group']})"
                    + (f" and the empty dead-letter topics {', '.join(plan['drop_topics'])}" if plan["drop_topics"] else "")
                    + (f"; would keep (not empty): {', '.join(plan['kept_topics'])}" if plan["kept_topics"] else "")
                    + "; add --apply")
        if as_json:
            print(json.dumps(plan, indent=2))
        else:
            out.print(text)
        return 0

    return app


async def _drop_plan(admin_dsn: str, shadow: str, live: str, kc: Any) -> dict[str, Any]:
    """What ``drop --apply`` would do, changing nothing."""
    from rapport_tools.kafka_ops import list_topic_names, topic_infos  # noqa: PLC0415

    if shadow == live:
        raise R.ReplayError("refusing to drop the live schema")
    conn = await asyncpg.connect(admin_dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:
        meta = await R.read_meta(conn, shadow)
    finally:
        await conn.close()
    group = meta["group"]
    mine = [t for t in await list_topic_names(kc) if t.endswith(f".dlq.{group}") or t.endswith(f".dlq.{group}-contacts")]
    infos = await topic_infos(kc, mine) if mine else []
    return {"applied": False, "shadow": shadow, "group": group,
            "drop_topics": [i.name for i in infos if i.records == 0],
            "kept_topics": [i.name for i in infos if i.records]}


class RateColumn(ProgressColumn):
    """Records per second over the last seconds (rich's own speed estimate of the task)."""

    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:,.0f} records/s" if task.speed else "- records/s")


async def _run(service: str, settings: ServiceSettings, build_app: Callable, p: R.Projection, admin_dsn: str,
               shadow: str, group: str, since: Any, timeout: float) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_dsn, timeout=PG_CONNECT_TIMEOUT_S)
    try:  # a resumed shadow keeps the group it was built with
        if await conn.fetchval(f"SELECT to_regclass('{shadow}.{R.META}') IS NOT NULL"):
            group = (await R.read_meta(conn, shadow))["group"]
    finally:
        await conn.close()
    with Progress(TextColumn(f"replaying {service} into {shadow}"), BarColumn(), MofNCompleteColumn(),
                  RateColumn(), TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task("records", total=None)
        return await R.run(settings, build_app, p, admin_dsn=admin_dsn, shadow=shadow, group=group,
                           since=since, timeout_s=timeout,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
