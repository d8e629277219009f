"""``rapport``: inspect, dump, load and repair Rapport's event streams on any Kafka.

    rapport [--bootstrap HOST:PORT] topics | tail | dump | load | groups list|reset | dlq list|redrive
                                    | acls show|apply
    rapport outbox parked|show|retry|drop --dsn DSN [--schema S]     (a service's outbox in Postgres)
    rapport timers parked|show|retry|cancel --dsn DSN [--schema S]   (a service's durable timers)

The broker comes from ``--bootstrap`` or ``RAPPORT_KAFKA_BOOTSTRAP`` (default ``localhost:9092``);
SASL credentials (secure profile) from ``--sasl-username``/``--sasl-password`` or
``RAPPORT_KAFKA_SASL_USERNAME``/``_PASSWORD`` (mechanism ``RAPPORT_KAFKA_SASL_MECHANISM``, default
PLAIN like the services and the secure profile; SCRAM-SHA-256/512 for other clusters). Anything that changes state (``groups reset``, ``dlq redrive``, ``acls apply --prune``,
``outbox drop``, ``timers cancel``) is a dry run unless ``--apply`` is given. Kafka or Postgres
unreachable, a missing file: one line on stderr, exit code 2 (``--debug``: the traceback too;
rapport_tools/cli_common.py). See docs/replay.md.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sys
from contextlib import aclosing, contextmanager
from typing import Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import cli_common
from . import kafka_ops as ops

PROG = "rapport"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Inspect, dump, load and repair Rapport's event streams on any Kafka (docs/replay.md).",
                  context_settings=cli_common.CONTEXT_SETTINGS)
groups_app = typer.Typer(no_args_is_help=True, help="Consumer groups: list, reset offsets (dry run by default).")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics (<topic>.dlq.<group>): list, redrive.")
app.add_typer(groups_app, name="groups")
app.add_typer(dlq_app, name="dlq")
acls_app = typer.Typer(no_args_is_help=True, help="Kafka ACLs of the secure profile (docs/partners.md, Access).")
app.add_typer(acls_app, name="acls")
outbox_app = typer.Typer(no_args_is_help=True, help="A service's outbox in Postgres: parked rows (list, show, retry, "
                         "drop; deploy/README.md, \"Parked outbox rows\").")
app.add_typer(outbox_app, name="outbox")
timers_app = typer.Typer(no_args_is_help=True, help="A service's durable timers in Postgres: parked timers (list, show, "
                         "retry, cancel; deploy/README.md, \"Parked timers\").")
app.add_typer(timers_app, name="timers")

# Tables stay readable when piped or captured (rich would otherwise assume 80 columns).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)


class State:
    conn: ops.Conn = ops.Conn()


@app.callback()
def _global(
    bootstrap: Optional[str] = typer.Option(None, "--bootstrap", "-b", envvar="RAPPORT_KAFKA_BOOTSTRAP",
                                            help="Kafka bootstrap servers (default localhost:9092)"),
    sasl_username: Optional[str] = typer.Option(None, envvar="RAPPORT_KAFKA_SASL_USERNAME", help="SASL user (secure profile)"),
    sasl_password: Optional[str] = typer.Option(None, envvar="RAPPORT_KAFKA_SASL_PASSWORD", help="SASL password"),
    sasl_mechanism: Optional[str] = typer.Option(None, envvar="RAPPORT_KAFKA_SASL_MECHANISM",
                                                 help="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512"),
    security_protocol: Optional[str] = typer.Option(None, envvar="RAPPORT_KAFKA_SECURITY_PROTOCOL",
                                                    help="PLAINTEXT | SASL_PLAINTEXT | SASL_SSL (default: SASL_PLAINTEXT with a user)"),
    ssl_cafile: Optional[str] = typer.Option(None, envvar="RAPPORT_KAFKA_SSL_CAFILE",
                                             help="SASL_SSL: the CA that signed the broker's certificate"),
    debug: bool = typer.Option(False, "--debug", envvar="RAPPORT_DEBUG", help=cli_common.DEBUG_HELP),
) -> None:
    cli_common.set_debug(debug)
    State.conn = ops.Conn.from_env(bootstrap, sasl_username=sasl_username, sasl_password=sasl_password,
                                   sasl_mechanism=sasl_mechanism, security_protocol=security_protocol,
                                   ssl_cafile=ssl_cafile)


def run(coro: Any, postgres: str | None = None) -> Any:
    """Run ``coro``. Kafka (or, for outbox/timers, Postgres) unreachable or refusing, a file that
    cannot be read or written, a refusal of the tool: one line on stderr, exit code 2 (the traceback
    too with --debug)."""
    try:
        return cli_common.guard(PROG, lambda: asyncio.run(coro), postgres=postgres,
                                kafka=None if postgres else State.conn.bootstrap)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    finally:
        coro.close()  # never awaited when asyncio.run refused to start it


def fail(message: str, exc: BaseException | None = None) -> None:
    cli_common.fail(PROG, message, exc)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[ops.Progress]:
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _time(value: Optional[str], name: str) -> Any:
    if value is None:
        return None
    try:
        return ops.parse_time(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an RFC 3339 time or epoch milliseconds", param_hint=name)


def _matcher(types: List[str] | None, episode: Optional[str]):
    if not types and not episode:
        return None

    def match(r: Any) -> bool:
        h = ops.headers_dict(r.headers)
        if types and not any(fnmatch.fnmatchcase(h.get("ce_type", ""), t) for t in types):
            return False
        if episode and episode not in (h.get("ce_subject"), (r.key or b"").decode("utf-8", "replace")):
            return False
        return True

    return match


# ------------------------------------------------------------------------------------ topics

@app.command()
def topics(
    all_: bool = typer.Option(False, "--all", help="include Kafka's internal topics (__consumer_offsets, ...)"),
    group: Optional[List[str]] = typer.Option(None, "--group", "-g", help="only these consumer groups"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Topics with partitions and offsets, and each consumer group's lag."""

    async def go() -> tuple[list[ops.TopicInfo], list[ops.GroupInfo]]:
        names = await ops.list_topic_names(State.conn, include_internal=all_)
        return await ops.topic_infos(State.conn, names), await ops.groups(State.conn, group)

    infos, gis = run(go())
    if as_json:
        typer.echo(json.dumps({
            "topics": [{"topic": t.name, "partitions": [p.__dict__ for p in t.partitions]} for t in infos],
            "groups": [{"group": g.group, "state": g.state, "members": g.members,
                        "partitions": [{"topic": tp.topic, "partition": tp.partition, "committed": off,
                                        "lag": g.lag.get(tp)} for tp, off in sorted(g.offsets.items())]} for g in gis]},
                              indent=2))
        return
    t = Table(title="Topics", title_justify="left")
    for col in ("topic", "partitions", "records", "end offsets (per partition)", "begin offsets"):
        t.add_column(col, justify="right" if col in ("partitions", "records") else "left")
    for info in infos:
        t.add_row(info.name, str(len(info.partitions)), str(info.records),
                  " ".join(f"{p.partition}:{p.end}" for p in info.partitions),
                  " ".join(f"{p.partition}:{p.begin}" for p in info.partitions))
    out.print(t)
    g = Table(title="Consumer groups", title_justify="left")
    for col in ("group", "state", "members", "topic", "lag", "committed (per partition)"):
        g.add_column(col, justify="right" if col in ("members", "lag") else "left")
    for gi in gis:
        per_topic: dict[str, list] = {}
        for tp in sorted(gi.offsets):
            per_topic.setdefault(tp.topic, []).append(tp)
        if not per_topic:
            g.add_row(gi.group, gi.state, str(gi.members), "—", "—", "")
        for topic, tps in per_topic.items():
            g.add_row(gi.group, gi.state, str(gi.members), topic, str(sum(gi.lag.get(tp, 0) for tp in tps)),
                      " ".join(f"{tp.partition}:{gi.offsets[tp]}" for tp in tps))
    out.print(g)


# ------------------------------------------------------------------------------------ tail

def _print_record(r: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(ops.record_to_json(r), ensure_ascii=False, separators=(",", ":")))
        return
    h = ops.headers_dict(r.headers)
    head = (f"[cyan]{r.topic}[/cyan] {r.partition}@{r.offset}  {ops._iso(r.timestamp)}  "
            f"[bold]{h.get('ce_type', '(no ce_type)')}[/bold]  key={(r.key or b'').decode('utf-8', 'replace')}  "
            f"id={h.get('ce_id', '-')}")
    out.print(head)
    extra = {k: v for k, v in h.items() if k not in ("ce_type", "ce_id", "ce_specversion", "content-type",
                                                     "ce_subject", "ce_dataschema")}
    out.print("  " + "  ".join(f"[dim]{k}[/dim]={v}" for k, v in extra.items()))
    if r.value is None:
        out.print("  (tombstone)")
        return
    try:
        typer.echo(json.dumps(json.loads(r.value), indent=2, ensure_ascii=False))
    except (ValueError, UnicodeDecodeError):
        typer.echo(f"  ({len(r.value)} bytes, not JSON) {ops.encode_bytes(r.value)[0][:200]}")


@app.command()
def tail(
    topic: List[str] = typer.Argument(..., help="topics to read"),
    type_: Optional[List[str]] = typer.Option(None, "--type", "-t", help="only these ce_type values (glob: 'rapport.session.*')"),
    episode: Optional[str] = typer.Option(None, "--episode", "-e", help="only this episode (key / ce_subject)"),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="start at the oldest record"),
    last: Optional[int] = typer.Option(None, "--last", "-n", help="start N records before the end of each partition"),
    since: Optional[str] = typer.Option(None, "--since", help="start at this time (RFC 3339 or epoch ms)"),
    follow: bool = typer.Option(True, "--follow/--no-follow", "-f/-F", help="keep waiting for new records"),
    max_records: Optional[int] = typer.Option(None, "--max", help="stop after this many matching records"),
    as_json: bool = typer.Option(False, "--json", help="one JSON line per record (the dump format)"),
) -> None:
    """Follow topics, decoded (CloudEvents headers + JSON value); filter by type and episode."""
    match = _matcher(type_, episode)
    start_last = last if last is not None else (None if (from_beginning or since) else 10)

    async def go() -> None:
        plan = await ops.plan_read(State.conn, topic, since=_time(since, "--since"), last=start_last, follow=follow)
        n = 0
        async with aclosing(ops.read(State.conn, plan)) as records:  # closes the consumer on --max
            async for r in records:
                if match is None or match(r):
                    _print_record(r, as_json)
                    n += 1
                    if max_records is not None and n >= max_records:
                        return

    run(go())


# ------------------------------------------------------------------------------------ dump / load

@app.command()
def dump(
    topic: List[str] = typer.Argument(..., help="topics to dump"),
    output: str = typer.Option("-", "--output", "-o", help="file to write (JSON Lines); - = stdout"),
    since: Optional[str] = typer.Option(None, "--since", help="from this time (RFC 3339 or epoch ms), inclusive"),
    until: Optional[str] = typer.Option(None, "--until", help="up to this time, exclusive"),
    partition: Optional[List[int]] = typer.Option(None, "--partition", "-p", help="only these partitions"),
    from_offset: Optional[int] = typer.Option(None, "--from-offset", help="from this offset (each partition)"),
    to_offset: Optional[int] = typer.Option(None, "--to-offset", help="up to this offset, exclusive"),
    type_: Optional[List[str]] = typer.Option(None, "--type", "-t", help="only these ce_type values (glob)"),
    episode: Optional[str] = typer.Option(None, "--episode", "-e", help="only this episode"),
) -> None:
    """Topics (or a time/offset range of them) to JSON Lines: topic, partition, offset, timestamp,
    key, value and headers; bytes that are not UTF-8 are base64 (``*_encoding``)."""

    async def go() -> tuple[int, int]:
        plan = await ops.plan_read(State.conn, topic, since=_time(since, "--since"), until=_time(until, "--until"),
                                   partitions=partition, from_offset=from_offset, to_offset=to_offset)
        fh = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
        try:
            with progress_bar(f"dump {', '.join(topic)}", plan.total) as advance:
                n = await ops.dump(State.conn, plan, fh.write, progress=advance, match=_matcher(type_, episode))
        finally:
            if fh is not sys.stdout:
                fh.close()
        return n, plan.total or 0

    n, total = run(go())
    err.print(f"dumped {n} record(s) of {total} in range" + ("" if output == "-" else f" to {output}"))


def _read_lines(path: str) -> list[dict]:
    fh = sys.stdin if path == "-" else open(path, encoding="utf-8")
    try:
        return [json.loads(line) for line in fh if line.strip()]
    finally:
        if fh is not sys.stdin:
            fh.close()


@app.command()
def load(
    file: str = typer.Argument(..., help="JSON Lines written by `rapport dump` (- = stdin)"),
    topic: str = typer.Option(..., "--topic", "-T", help="target (sandbox) topic"),
    keep_partitions: bool = typer.Option(False, "--keep-partitions", help="write each record to its dumped partition number"),
    timestamps: bool = typer.Option(True, "--timestamps/--no-timestamps", help="keep the dumped CreateTime timestamps"),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="partitions when creating the topic (default: as dumped)"),
    force: bool = typer.Option(False, "--force", help="allow loading into a live Rapport topic"),
) -> None:
    """Write dumped records into a (sandbox) topic: keys, headers and values byte for byte."""
    try:
        ops.refuse_live_topic(topic, force)
    except ops.ToolError as exc:
        fail(str(exc), exc)
    try:
        records = _read_lines(file)
    except OSError as exc:
        fail(cli_common.one_line(exc) or str(exc), exc)
    except ValueError as exc:
        fail(f"{file}: not JSON Lines written by `rapport dump`: {exc}", exc)

    async def go() -> tuple[int, bool]:
        n_parts = partitions or (max((r["partition"] for r in records), default=0) + 1)
        created = await ops.ensure_topic(State.conn, topic, n_parts)
        with progress_bar(f"load {topic}", len(records)) as advance:
            n = await ops.load(State.conn, records, topic, keep_partitions=keep_partitions,
                               keep_timestamps=timestamps, progress=advance)
        return n, created

    n, created = run(go())
    err.print(f"loaded {n} record(s) into {topic}" + (" (created)" if created else ""))


# ------------------------------------------------------------------------------------ groups

def _group_json(g: ops.GroupInfo) -> dict:
    return {"group": g.group, "state": g.state, "members": g.members, "lag": sum(g.lag.values()),
            "partitions": [{"topic": tp.topic, "partition": tp.partition, "committed": off, "lag": g.lag.get(tp)}
                           for tp, off in sorted(g.offsets.items())]}


@groups_app.command("list")
def groups_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Consumer groups with their state, members and lag."""
    gis = run(ops.groups(State.conn))
    if as_json:
        typer.echo(json.dumps([_group_json(g) for g in gis], indent=2))
        return
    t = Table()
    for col in ("group", "state", "members", "topics", "lag"):
        t.add_column(col)
    for g in gis:
        t.add_row(g.group, g.state, str(g.members), ", ".join(sorted({tp.topic for tp in g.offsets})),
                  str(sum(g.lag.values())))
    out.print(t)


@groups_app.command("reset")
def groups_reset(
    group: str = typer.Argument(..., help="consumer group"),
    topic: Optional[List[str]] = typer.Option(None, "--topic", help="topics (default: those the group has offsets for)"),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="the first offset still in each partition"),
    to_latest: bool = typer.Option(False, "--to-latest", help="the end of each partition (skip everything)"),
    to_datetime: Optional[str] = typer.Option(None, "--to-datetime", help="first offset at/after this time"),
    to_offset: Optional[int] = typer.Option(None, "--to-offset", help="this offset in every selected partition"),
    partition: Optional[List[int]] = typer.Option(None, "--partition", "-p", help="only these partitions"),
    apply: bool = typer.Option(False, "--apply/--dry-run", help="commit the new offsets (default: --dry-run)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output (the plan, and whether it was applied)"),
) -> None:
    """Move a group's committed offsets. Dry run unless --apply; refused while the group has members."""
    chosen = [n for n, v in (("earliest", to_earliest), ("latest", to_latest), ("datetime", to_datetime is not None),
                             ("offset", to_offset is not None)) if v]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset")

    async def go() -> ops.ResetPlan:
        plan = await ops.plan_reset(State.conn, group, topic, to=chosen[0], at=_time(to_datetime, "--to-datetime"),
                                    offset=to_offset, partitions=partition)
        if not as_json:
            _print_reset(plan, apply)
        if apply:
            await ops.apply_reset(State.conn, plan)
        return plan

    plan = run(go())
    if as_json:
        typer.echo(json.dumps({"group": plan.group, "state": plan.state, "members": plan.members, "applied": apply,
                               "partitions": [{"topic": r.tp.topic, "partition": r.tp.partition, "current": r.current,
                                               "new": r.target, "begin": r.begin, "end": r.end,
                                               "lag_after": r.lag_after} for r in plan.rows]}, indent=2))
        return
    if apply:
        err.print(f"[green]group {group}: {len(plan.rows)} partition offset(s) committed[/green]")
    else:
        err.print("dry run: nothing changed; add --apply to commit" +
                  (f" [yellow](would be refused now: the group is {plan.state} with {plan.members} member(s))[/yellow]"
                   if plan.active else ""))


def _print_reset(plan: ops.ResetPlan, apply: bool) -> None:
    t = Table(title=f"{'Reset' if apply else 'Dry run'}: group {plan.group} ({plan.state}, {plan.members} member(s))",
              title_justify="left")
    for col in ("topic", "partition", "current", "new", "begin", "end", "lag after"):
        t.add_column(col, justify="left" if col == "topic" else "right")
    for r in plan.rows:
        t.add_row(r.tp.topic, str(r.tp.partition), "—" if r.current is None else str(r.current), str(r.target),
                  str(r.begin), str(r.end), str(r.lag_after))
    out.print(t)


# ------------------------------------------------------------------------------------ dlq

@dlq_app.command("list")
def dlq_list(
    topic: Optional[List[str]] = typer.Argument(None, help="DLQ topics (default: every <topic>.dlq.<group>)"),
    pending: bool = typer.Option(False, "--pending", help="only records not redriven yet"),
    as_json: bool = typer.Option(False, "--json", help="one JSON line per dead letter (dump format + redrive mark)"),
) -> None:
    """Dead-lettered records with their error, origin and redrive status."""
    letters = run(ops.dead_letters(State.conn, topic or None))
    if pending:
        letters = [d for d in letters if not d.redriven]
    if as_json:
        for d in letters:
            rec = type("R", (), {"topic": d.dlq_topic, "partition": d.partition, "offset": d.offset,
                                 "timestamp": d.timestamp, "timestamp_type": 0, "key": d.key, "value": d.value,
                                 "headers": d.headers})
            typer.echo(json.dumps({**ops.record_to_json(rec), "redriven": d.redriven}, ensure_ascii=False,
                                  separators=(",", ":")))
        return
    t = Table(title=f"Dead letters ({len(letters)})", title_justify="left")
    for col in ("dlq topic", "p@offset", "failed at", "reason", "error", "original", "ce_type", "ce_id", "status"):
        t.add_column(col, overflow="fold")
    for d in letters:
        h = d.h
        status = (f"[green]redriven → {d.redriven['target_topic']} {d.redriven['target_partition']}@"
                  f"{d.redriven['target_offset']}[/green]" if d.redriven else "[yellow]pending[/yellow]")
        t.add_row(d.dlq_topic, f"{d.partition}@{d.offset}", h.get("dlq_failed_at", ""), h.get("dlq_reason", ""),
                  (h.get("dlq_error", "") or "")[:160],
                  f"{h.get('dlq_original_topic', '')} {h.get('dlq_original_partition', '')}@{h.get('dlq_original_offset', '')}",
                  h.get("ce_type", ""), h.get("ce_id", ""), status)
    out.print(t)


def _offset_spec(spec: str) -> tuple[int, int]:
    try:
        p, o = spec.split(":", 1) if ":" in spec else spec.split("@", 1)
        return int(p), int(o)
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: expected PARTITION:OFFSET", param_hint="--offset")


@dlq_app.command("redrive")
def dlq_redrive(
    topic: str = typer.Argument(..., help="the DLQ topic, <topic>.dlq.<group>"),
    offset: Optional[List[str]] = typer.Option(None, "--offset", help="only these records, PARTITION:OFFSET (repeatable)"),
    reason: Optional[str] = typer.Option(None, "--reason", help="only this dlq_reason (envelope, type_topic_mismatch, contract, rejected, handler, consumer_error)"),
    type_: Optional[str] = typer.Option(None, "--type", help="only this ce_type"),
    include_undecodable: bool = typer.Option(False, "--include-undecodable",
                                             help="also records that were not CloudEvents (dlq_reason=envelope / no ce_id)"),
    apply: bool = typer.Option(False, "--apply/--dry-run", help="send them (default: --dry-run)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output (one entry per selected record)"),
) -> None:
    """Send dead letters back to their original topic (original key and headers, minus dlq_*), each
    exactly once: the send and its mark on rapport.tools.redrive commit in one Kafka transaction."""
    offsets = [_offset_spec(s) for s in offset or []]

    async def go() -> ops.RedriveResult:
        with progress_bar(f"redrive {topic}", None) as advance:
            return await ops.redrive(State.conn, topic, apply=apply, offsets=offsets, reason=reason,
                                     event_type=type_, include_undecodable=include_undecodable, progress=advance)

    res = run(go())
    if as_json:
        typer.echo(json.dumps(_redrive_json(topic, res, apply), indent=2))
        return
    t = Table(title=f"{'Redriven' if apply else 'Dry run'}: {topic}", title_justify="left")
    for col in ("p@offset", "reason", "ce_type", "ce_id", "to", "status"):
        t.add_column(col, overflow="fold")
    sent = {id(d) for d in res.sent}
    held = {id(d) for d in res.undecodable}
    mismatched = {id(d) for d in res.mismatched}
    for d in res.selected:
        h = d.h
        if id(d) in sent:
            m = d.redriven or {}
            status = f"[green]sent → {m.get('target_partition')}@{m.get('target_offset')}[/green]"
        elif d.redriven:
            status = "already redriven (skipped)"
        elif id(d) in mismatched:
            status = (f"[red]skipped: its dlq_original_topic header says {d.header_topic!r}, "
                      f"not {d.original_topic}[/red]")
        elif id(d) in held:
            status = "[yellow]held back: not a CloudEvent (--include-undecodable)[/yellow]"
        else:
            status = "would send"
        t.add_row(f"{d.partition}@{d.offset}", h.get("dlq_reason", ""), h.get("ce_type", ""), h.get("ce_id", ""),
                  d.original_topic, status)
    out.print(t)
    todo = len(res.selected) - len(res.already) - len(res.undecodable) - len(res.mismatched)
    held_note = f", {len(res.undecodable)} held back (not CloudEvents)" if res.undecodable else ""
    if res.mismatched:
        held_note += (f", {len(res.mismatched)} skipped (dlq_original_topic header disagrees with the DLQ's "
                      "topic; redrive only ever sends to the topic the DLQ's name encodes)")
    if apply:
        err.print(f"[green]{len(res.sent)} record(s) redriven[/green], {len(res.already)} already redriven before{held_note}")
    else:
        err.print(f"dry run: {todo} record(s) would be redriven, {len(res.already)} already were{held_note}; add --apply")


def _redrive_json(topic: str, res: ops.RedriveResult, apply: bool) -> dict:
    sent = {id(d) for d in res.sent}
    held = {id(d) for d in res.undecodable}
    mismatched = {id(d) for d in res.mismatched}
    rows = []
    for d in res.selected:
        if id(d) in sent:
            status = "sent"
        elif d.redriven:
            status = "already_redriven"
        elif id(d) in mismatched:
            status = "skipped_header_disagrees"
        elif id(d) in held:
            status = "held_back_not_cloudevent"
        else:
            status = "would_send"
        h = d.h
        rows.append({"partition": d.partition, "offset": d.offset, "reason": h.get("dlq_reason"),
                     "ce_type": h.get("ce_type"), "ce_id": h.get("ce_id"), "to": d.original_topic, "status": status,
                     "redriven": d.redriven if id(d) in sent else None})
    return {"topic": topic, "applied": apply, "sent": len(res.sent), "already": len(res.already),
            "held_back": len(res.undecodable), "skipped": len(res.mismatched), "records": rows}


# ------------------------------------------------------------------------------------ acls

@acls_app.command("show")
def acls_show(
    partner: Optional[List[str]] = typer.Option(None, "--partner", "-p", help="partner name (repeatable; default demo)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The desired ACL set (rapport_tools.acl): per service and per partner principal."""
    from . import acl  # noqa: PLC0415

    acls = acl.desired_acls(partner or list(acl.DEFAULT_PARTNERS))
    if as_json:
        typer.echo(json.dumps(acl.table(acls), indent=2))
        return
    t = Table("principal", "operation", "resource", "name", "pattern")
    for a in acls:
        t.add_row(a.principal, a.operation, a.resource_type.lower(), a.resource_name, a.pattern_type.lower())
    out.print(t)


@acls_app.command("apply")
def acls_apply(
    partner: Optional[List[str]] = typer.Option(None, "--partner", "-p", help="partner name (repeatable; default demo)"),
    prune: bool = typer.Option(False, "--prune", help="also delete ACLs that are not in the set (a dry run, "
                                                      "listing them, unless --apply)"),
    apply: bool = typer.Option(False, "--apply/--dry-run", help="with --prune: really delete (default: --dry-run)"),
    no_topics: bool = typer.Option(False, "--no-topics", help="do not create the topics the ACLs name"),
    partitions: int = typer.Option(3, help="partitions of topics created here"),
    connect_timeout: float = typer.Option(cli_common.KAFKA_CONNECT_TIMEOUT_S, "--connect-timeout",
                                          help="seconds to wait for the broker's first answer"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable report"),
) -> None:
    """Create the ACL set on the cluster (idempotent), as a super user (--sasl-username admin
    --sasl-mechanism PLAIN). Creates the topics it names first, so readers never need CREATE.
    With --prune, ACLs not in the set are listed, and deleted only with --apply."""
    from . import acl  # noqa: PLC0415

    c = State.conn
    config = cli_common.librdkafka_config(connect_timeout)

    def go() -> Any:
        security = c.security()
        partners = partner or list(acl.DEFAULT_PARTNERS)
        acl.desired_acls(partners)  # a bad partner name is refused before anything is sent
        # One metadata request first: a broker that does not answer is an error within seconds.
        admin = acl.admin_client(c.bootstrap, security, **config)
        try:
            admin.list_topics(timeout=connect_timeout)
        except Exception as exc:  # noqa: BLE001 - confluent_kafka.KafkaException (transport, timeout)
            detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            raise cli_common.CliError(f"cannot reach Kafka at {c.bootstrap} within {connect_timeout:g} s: "
                                      f"{detail}") from exc
        return acl.apply_acls(c.bootstrap, security, partners=partners, prune=prune, prune_dry_run=not apply,
                              create_topics=not no_topics, partitions=partitions, client_config=config)

    try:
        report = cli_common.guard(PROG, go, kafka=c.bootstrap)
    except ValueError as exc:
        fail(str(exc), exc)
    if as_json:
        typer.echo(json.dumps({"topics_created": report.topics_created, "created": acl.table(report.created),
                               "unchanged": acl.table(report.unchanged), "deleted": acl.table(report.deleted),
                               "would_delete": acl.table(report.would_delete), "extra": acl.table(report.extra)},
                              indent=2))
        return
    for name in report.topics_created:
        out.print(f"[green]+ topic[/green] {name}")
    for a in report.created:
        out.print(f"[green]+[/green] {a}")
    for a in report.deleted:
        out.print(f"[red]-[/red] {a}")
    for a in report.would_delete:
        out.print(f"[red]- (dry run)[/red] {a} (not in the set; --prune --apply deletes it)")
    for a in report.extra:
        out.print(f"[yellow]?[/yellow] {a} (not in the set; kept, --prune deletes it)")
    err.print(report.summary())


# ------------------------------------------------------------------------------------ outbox

DSN_OPTION = typer.Option(..., "--dsn", envvar="RAPPORT_DATABASE_DSN",
                          help="Postgres DSN of the service's role")
SCHEMA_OPTION = typer.Option(None, "--schema", "-s", envvar="RAPPORT_DB_SCHEMA",
                             help="the service's schema (intake, scheduler, outcomes, notifier; "
                                  "default: the role's search_path)")


def _outbox(dsn: str, schema: Optional[str], work: Any) -> Any:
    """Run ``work(conn, schema)`` against the service's database."""
    return _in_schema(dsn, schema, "outbox", work)


def _in_schema(dsn: str, schema: Optional[str], table: str, work: Any) -> Any:
    """Run ``work(conn, schema)`` against the service's database, whose schema has ``table``."""
    import asyncpg  # noqa: PLC0415

    async def go() -> Any:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            name = schema or await conn.fetchval("SELECT current_schema()")
            if not name or await conn.fetchval("SELECT to_regclass($1) IS NULL", f"{name}.{table}"):
                raise ops.ToolError(f"no {table} table in schema {name!r} (give --schema)")
            return await work(conn, name)
        except ValueError as exc:
            raise ops.ToolError(str(exc)) from None
        finally:
            await conn.close()

    return run(go(), postgres=dsn)


def _row_json(r: dict) -> dict:
    d = {k: (v.isoformat() if hasattr(v, "isoformat") else str(v) if k == "event_id" else v) for k, v in r.items()}
    if isinstance(r.get("value"), bytes):
        d["value"], d["value_encoding"] = ops.encode_bytes(r["value"])
    return d


@outbox_app.command("parked")
def outbox_parked(dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION,
                  as_json: bool = typer.Option(False, "--json", help="one JSON line per parked row")) -> None:
    """Parked rows (the relay skips them; later rows of their key wait), oldest first."""
    from rapport_shared import outbox  # noqa: PLC0415

    async def work(conn: Any, name: str) -> tuple[list[dict], dict]:
        return await outbox.parked_rows(conn, name), await outbox.outbox_status(conn, name)

    rows, status = _outbox(dsn, schema, work)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(_row_json(r), separators=(",", ":")))
        return
    t = Table(title=f"Parked outbox rows ({len(rows)})", title_justify="left")
    for col in ("seq", "event id", "topic", "type", "key", "bytes", "attempts", "parked at", "waiting", "error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["seq"]), str(r["event_id"]), r["topic"], r["event_type"], r["key"], str(r["value_bytes"]),
                  str(r["attempts"]), r["parked_at"].isoformat(timespec="seconds"), str(r["waiting"]),
                  (r["last_error"] or "")[:200])
    out.print(t)
    err.print(f"{status['parked']} parked, {status['pending']} pending ({status['failing']} failing, not parked yet)"
              + ("; `rapport outbox retry ID` or `rapport outbox drop ID --apply`" if rows else ""))


@outbox_app.command("show")
def outbox_show(row_id: str = typer.Argument(..., help="the row's seq or event id"),
                dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION,
                value: bool = typer.Option(False, "--value", help="also print the value (the event's data: may hold "
                                                                  "health data)")) -> None:
    """One outbox row: state, error, headers (and with --value, the data)."""
    from rapport_shared import outbox  # noqa: PLC0415

    r = _outbox(dsn, schema, lambda conn, name: outbox.outbox_row(conn, name, row_id))
    if r is None:
        err.print(f"[red]error:[/red] no outbox row {row_id}")
        raise typer.Exit(1)
    d = _row_json(r)
    if not value:
        d.pop("value", None)
        d.pop("value_encoding", None)
    typer.echo(json.dumps(d, indent=2, ensure_ascii=False))


@outbox_app.command("retry")
def outbox_retry(row_id: Optional[List[str]] = typer.Argument(None, help="seqs or event ids of parked rows"),
                 all_: bool = typer.Option(False, "--all", help="every parked row"),
                 dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION) -> None:
    """Unpark rows: the relay publishes them again (first of their key), with a fresh attempt count.
    Fix the cause first (a topic's max.message.bytes, an ACL), or they park again."""
    from rapport_shared import outbox  # noqa: PLC0415

    if bool(row_id) == all_:
        raise typer.BadParameter("give row ids or --all")
    seqs = _outbox(dsn, schema, lambda conn, name: outbox.retry_parked(conn, name, None if all_ else list(row_id or [])))
    if not seqs:
        err.print("[yellow]no parked row matched[/yellow]")
        raise typer.Exit(1)
    err.print(f"[green]{len(seqs)} row(s) unparked[/green]: {', '.join(map(str, seqs))}; the relay publishes them next")


@outbox_app.command("drop")
def outbox_drop(row_id: str = typer.Argument(..., help="the parked row's seq or event id"),
                dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION,
                save: Optional[str] = typer.Option(None, "--save", help="write the row (JSON, value included) here "
                                                                        "before deleting it"),
                apply: bool = typer.Option(False, "--apply", help="delete it (default: dry run)")) -> None:
    """Delete a parked row: its event is never published, the later rows of its key flow. Dry run
    unless --apply. Only parked rows can be dropped."""
    from rapport_shared import outbox  # noqa: PLC0415

    r = _outbox(dsn, schema, lambda conn, name: outbox.drop_parked(conn, name, row_id, apply=apply))
    if r is None:
        err.print(f"[red]error:[/red] no parked outbox row {row_id}")
        raise typer.Exit(1)
    if save:
        with open(save, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(_row_json(r), ensure_ascii=False) + "\n")
    what = f"seq {r['seq']} ({r['event_type']} on {r['topic']}, key {r['key']}, event {r['event_id']})"
    if apply:
        err.print(f"[green]dropped[/green] {what}" + (f"; saved to {save}" if save else ""))
    else:
        err.print(f"dry run: would drop {what}; add --apply" + (f" (saved to {save})" if save else ""))


# ------------------------------------------------------------------------------------ timers

def _timer_json(r: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else str(v) if k == "timer_id" else v) for k, v in r.items()}


@timers_app.command("parked")
def timers_parked(dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION,
                  kind: Optional[str] = typer.Option(None, "--kind", help="only timers of this kind"),
                  as_json: bool = typer.Option(False, "--json", help="one JSON line per parked timer")) -> None:
    """Parked timers (their handler kept failing; the runner skips them until retried), oldest first."""
    from rapport_shared import timers  # noqa: PLC0415

    async def work(conn: Any, name: str) -> tuple[list[dict], dict]:
        return await timers.parked_timers(conn, name, kind), await timers.timer_status(conn, name)

    rows, status = _in_schema(dsn, schema, "timers", work)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(_timer_json(r), separators=(",", ":"), default=str))
        return
    t = Table(title=f"Parked timers ({len(rows)})", title_justify="left")
    for col in ("timer id", "kind", "key", "due at", "attempts", "parked at", "error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["timer_id"]), r["kind"], r["key"], r["due_at"].isoformat(timespec="seconds"), str(r["attempts"]),
                  r["parked_at"].isoformat(timespec="seconds"), (r["last_error"] or "")[:200])
    out.print(t)
    err.print(f"{status['parked']} parked, {status['pending']} pending ({status['failing']} failing, not parked yet)"
              + ("; `rapport timers retry ID` or `rapport timers cancel ID --apply`" if rows else ""))


@timers_app.command("show")
def timers_show(timer_id: str = typer.Argument(..., help="the timer's id"),
                dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION) -> None:
    """One timer: kind, key, due time, payload, state, attempts, last error."""
    from rapport_shared import timers  # noqa: PLC0415

    r = _in_schema(dsn, schema, "timers", lambda conn, name: timers.timer_row(conn, name, timer_id))
    if r is None:
        err.print(f"[red]error:[/red] no timer {timer_id}")
        raise typer.Exit(1)
    typer.echo(json.dumps(_timer_json(r), indent=2, ensure_ascii=False, default=str))


@timers_app.command("retry")
def timers_retry(timer_id: Optional[List[str]] = typer.Argument(None, help="ids of parked timers"),
                 all_: bool = typer.Option(False, "--all", help="every parked timer (with --kind: of that kind)"),
                 kind: Optional[str] = typer.Option(None, "--kind", help="with --all: only timers of this kind"),
                 dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION) -> None:
    """Unpark timers: the runner fires them next (they are due), with a fresh attempt count. Fix
    the cause first (the handler's error in `rapport timers show`), or they park again."""
    from rapport_shared import timers  # noqa: PLC0415

    if bool(timer_id) == all_:
        raise typer.BadParameter("give timer ids or --all")
    ids = _in_schema(dsn, schema, "timers",
                     lambda conn, name: timers.retry_parked(conn, name, None if all_ else list(timer_id or []),
                                                            kind if all_ else None))
    if not ids:
        err.print("[yellow]no parked timer matched[/yellow]")
        raise typer.Exit(1)
    err.print(f"[green]{len(ids)} timer(s) unparked[/green]: {', '.join(map(str, ids))}; the runner fires them next")


@timers_app.command("cancel")
def timers_cancel(timer_id: str = typer.Argument(..., help="the parked timer's id"),
                  dsn: str = DSN_OPTION, schema: Optional[str] = SCHEMA_OPTION,
                  apply: bool = typer.Option(False, "--apply", help="cancel it (default: dry run)")) -> None:
    """Cancel a parked timer: its effect (a reminder, an escalation, an overdue check) never
    happens. Dry run unless --apply. Only parked timers can be cancelled here."""
    from rapport_shared import timers  # noqa: PLC0415

    r = _in_schema(dsn, schema, "timers", lambda conn, name: timers.cancel_parked(conn, name, timer_id, apply=apply))
    if r is None:
        err.print(f"[red]error:[/red] no parked timer {timer_id}")
        raise typer.Exit(1)
    what = f"{r['timer_id']} ({r['kind']}, key {r['key']}, due {r['due_at'].isoformat(timespec='seconds')})"
    if apply:
        err.print(f"[green]cancelled[/green] {what}")
    else:
        err.print(f"dry run: would cancel {what}; add --apply")


def main() -> None:
    app(prog_name="rapport")


if __name__ == "__main__":
    main()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def replay(ctx: typer.Context, service: str = typer.Argument(..., help="the service, as in rapport-<service>")) -> None:
    """Rebuild a service's projection by replay: hands over to `rapport-<service> replay ...`
    (run | verify | swap | drop | describe), which runs the service's own code with its settings
    from the environment (docs/replay.md, "Rebuilding projections")."""
    from . import services as registry  # noqa: PLC0415

    try:
        main_ = registry.get(service).load("cli")
    except (LookupError, ModuleNotFoundError):  # unknown, or only in the image's manifest
        fail(f"service {service!r} is not installed here (run this where rapport-{service} is)")
    raise typer.Exit(main_([*(["--debug"] if cli_common.debug() else []), "replay", *ctx.args]))
