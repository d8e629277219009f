"""The three command lines fail the same way (issue 14, "One CLI style"): Kafka or Postgres that
cannot be reached (a closed port on 127.0.0.1), or a missing file, is ONE line on stderr
(``<prog>: error: ...``) and exit code 2; ``--debug`` adds the traceback. Also: every option has
help, ``--json`` output parses, and ``acls apply --prune`` deletes nothing without ``--apply``.

The commands run as subprocesses (the real entry points, ``python -m ...``), all at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rapport_tools import acl, admin as cli, cli_common, service_cli
from rapport_tools import cli as tools_cli
from rapport_tools import services as registry


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KAFKA = f"127.0.0.1:{closed_port()}"
PG_PORT = closed_port()
DSN = f"postgresql://nobody:pg-secret-pw@127.0.0.1:{PG_PORT}/rapport"
MISSING = "/nonexistent/rapport-test/missing.json"

RAPPORT = [sys.executable, "-m", "rapport_tools", "--bootstrap", KAFKA]
ADMIN = [sys.executable, "-m", "rapport_tools.admin"]


def svc(name: str) -> list[str]:
    return [sys.executable, "-m", f"rapport_{name}"]


# ``rapport``, in-process (Typer's runner; its stderr is what the user sees): argv after --bootstrap,
# a word the one line must hold.
TOOL_CASES = [
    (["topics", "--json"], "Kafka"),
    (["dump", "sandbox.x"], "Kafka"),
    (["tail", "sandbox.x", "--no-follow"], "Kafka"),
    (["groups", "list", "--json"], "Kafka"),
    (["groups", "reset", "g", "--to-earliest", "--json"], "Kafka"),
    (["dlq", "list"], "Kafka"),
    (["dlq", "redrive", "rapport.intake.dlq.rapport-scheduler", "--json"], "Kafka"),
    (["outbox", "parked", "--dsn", DSN], "Postgres"),
    (["outbox", "drop", "1", "--dsn", DSN], "Postgres"),
    (["timers", "parked", "--dsn", DSN, "--json"], "Postgres"),
    (["timers", "cancel", "00000000-0000-0000-0000-000000000000", "--dsn", DSN], "Postgres"),
    (["load", MISSING, "-T", "sandbox.x"], MISSING),
]


@pytest.mark.parametrize("argv,word", TOOL_CASES, ids=[" ".join(c[0][:2]) for c in TOOL_CASES])
def test_rapport_unreachable_or_missing_is_one_line_and_exit_2(argv, word):
    start = time.monotonic()
    r = CliRunner().invoke(tools_cli.app, ["--bootstrap", KAFKA, *argv])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output[-3000:], r.exception)
    assert len(lines) == 1 and lines[0].startswith("rapport: error: ") and word in lines[0], r.stderr[-3000:]
    assert "Traceback" not in r.output and "pg-secret-pw" not in r.output and r.stdout == ""
    assert time.monotonic() - start < 30


# The real entry points as subprocesses: (id, argv, program name in the error line, a word the line must hold)
CASES = [
    ("rapport topics", [*RAPPORT, "topics"], "rapport", "Kafka"),
    ("rapport acls apply", [*RAPPORT, "acls", "apply", "--prune"], "rapport", "Kafka"),
    ("rapport-scheduler migrate", [*svc("scheduler"), "migrate"], "rapport-scheduler", "Postgres"),
    ("rapport-intake migrate --status", [*svc("intake"), "migrate", "--status", "--json"], "rapport-intake",
     "Postgres"),
    ("rapport-scheduler replay run", [*svc("scheduler"), "replay", "run"], "rapport-scheduler", "Postgres"),
    ("rapport-outcomes replay verify", [*svc("outcomes"), "replay", "verify", "--shadow", "x", "--json"],
     "rapport-outcomes", "Postgres"),
    ("rapport-notifier replay swap", [*svc("notifier"), "replay", "swap", "--shadow", "x"], "rapport-notifier",
     "Postgres"),
    ("rapport-scheduler replay drop", [*svc("scheduler"), "replay", "drop", "--shadow", "x", "--apply"],
     "rapport-scheduler", "Postgres"),
    ("rapport-admin provision", [*ADMIN, "provision"], "rapport-admin", "Postgres"),
    ("rapport-admin token --key", [*ADMIN, "token", "--key", MISSING, "--sub", "x", "--role", "admin"],
     "rapport-admin", MISSING),
    ("rapport-admin keys jwks", [*ADMIN, "keys", "jwks", MISSING], "rapport-admin", MISSING),
    ("rapport-admin pseudonym", [*ADMIN, "pseudonym", "--key-file", MISSING, "1"], "rapport-admin", MISSING),
]
DEBUG_CASES = [
    ("rapport --debug topics", [*RAPPORT, "--debug", "topics"], "rapport", "KafkaConnectionError"),
    ("rapport-scheduler --debug migrate", [*svc("scheduler"), "--debug", "migrate"], "rapport-scheduler",
     "ConnectionRefusedError"),
    ("rapport-admin --debug token", [*ADMIN, "--debug", "token", "--key", MISSING, "--sub", "x", "--role", "a"],
     "rapport-admin", "FileNotFoundError"),
]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    e.update({"RAPPORT_ENVIRONMENT": "development", "RAPPORT_DATABASE_DSN": DSN, "RAPPORT_ADMIN_DSN": DSN,
              "RAPPORT_KAFKA_BOOTSTRAP": KAFKA, "COLUMNS": "200",
              **{f"RAPPORT_DB_PASSWORD_{s.upper()}": "pw" for s in registry.names()}})
    return e


def _run(argv: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=120, cwd="/")
    return done, time.monotonic() - start


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[subprocess.CompletedProcess, float]]:
    cases = CASES + DEBUG_CASES
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 4)) as pool:
        outs = list(pool.map(lambda c: _run(c[1]), cases))
    return {c[0]: out for c, out in zip(cases, outs)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_unreachable_or_missing_is_one_line_and_exit_2(results, case):
    name, _, prog, word = case
    done, seconds = results[name]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"{prog}: error: ") and word in lines[0], lines[0]
    assert "Traceback" not in done.stderr and "pg-secret-pw" not in done.stderr + done.stdout
    assert seconds < 60, f"{name} took {seconds:.0f} s"


def test_acls_apply_against_a_dead_broker_fails_in_seconds(results):
    done, seconds = results["rapport acls apply"]
    assert done.returncode == 2 and seconds < 20, (seconds, done.stderr)
    assert "within 5 s" in done.stderr


@pytest.mark.parametrize("case", DEBUG_CASES, ids=[c[0] for c in DEBUG_CASES])
def test_debug_shows_the_traceback(results, case):
    name, _, prog, exc_name = case
    done, _ = results[name]
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback (most recent call last)" in done.stderr and exc_name in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"{prog}: error: ")


# ---- every option has help ----------------------------------------------------------------------


def _walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


@pytest.mark.parametrize("which", ["rapport", "rapport-scheduler", "rapport-admin"])
def test_every_option_and_command_has_help(which):
    import typer.main  # noqa: PLC0415

    from rapport_scheduler import bootstrap, settings  # noqa: PLC0415

    app = {"rapport": tools_cli.app, "rapport-admin": cli.admin_app(),
           "rapport-scheduler": service_cli.service_app("scheduler", settings.load, bootstrap.build)}[which]
    missing = []
    for path, command in _walk(typer.main.get_command(app)):
        if path and not (command.help or command.short_help):
            missing.append(" ".join(path))
        for p in command.params:
            if getattr(p, "param_type_name", "") == "option" and not p.help:
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    assert not missing, f"{which}: no help for {missing}"


# ---- the former argparse behaviour of main(argv) -------------------------------------------------


def test_main_returns_the_code_and_exits_on_help_and_usage_errors(capsys):
    from rapport_scheduler.entrypoints.cli import main  # noqa: PLC0415

    for argv in (["migrate", "--help"], ["run", "--help"], ["replay", "drop", "--help"], ["--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0, argv
    for argv in (["migrate", "--no-such-flag"], ["nope"], ["replay", "swap"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
    with pytest.raises(SystemExit) as exc:
        cli.admin_main(["provision", "--services", "intake", "scheduler", "--help"])  # argparse's nargs=* form
    assert exc.value.code == 0
    capsys.readouterr()
    assert main(["replay", "describe", "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["service"] == "scheduler" and described["tables"]


def test_rapport_admin_provision_still_takes_several_services_after_one_flag(monkeypatch, capsys):
    seen = []

    async def fake(admin_dsn, database, service, password):
        seen.append((database, service, password))

    monkeypatch.setattr(cli.db, "provision", fake)
    monkeypatch.setenv("RAPPORT_DB_PASSWORD_INTAKE", "a")
    monkeypatch.setenv("RAPPORT_DB_PASSWORD_SCHEDULER", "b")
    assert cli.admin_main(["provision", "--admin-dsn", "postgresql://x@h/db", "--services", "intake", "scheduler"]) == 0
    assert seen == [("rapport", "intake", "a"), ("rapport", "scheduler", "b")]
    with pytest.raises(SystemExit) as exc:
        cli.admin_main(["provision", "--admin-dsn", "postgresql://x@h/db", "--services", "nobody"])
    assert exc.value.code == 2 and "unknown service" in capsys.readouterr().err


# ---- acls apply --prune is a dry run unless --apply -----------------------------------------------


class FakeFuture:
    def __init__(self, value=None):
        self.value = value

    def result(self, timeout=None):
        return self.value


class FakeAdmin:
    """Enough of confluent_kafka's AdminClient for apply_acls: one stale ACL on the cluster."""

    def __init__(self, have):
        self.have, self.deleted, self.created = list(have), [], []

    def list_topics(self, timeout=None):
        return type("Meta", (), {"topics": {t: None for t in acl.desired_topics()}, "brokers": {1: None}})()

    def describe_acls(self, flt, request_timeout=None):
        return FakeFuture([acl._binding(a) for a in self.have])

    def create_acls(self, bindings, request_timeout=None):
        self.created += bindings
        self.have += [acl._from_binding(b) for b in bindings]
        return {b: FakeFuture() for b in bindings}

    def delete_acls(self, filters, request_timeout=None):
        self.deleted += filters
        gone = {acl._from_binding(f) for f in filters}
        self.have = [a for a in self.have if a not in gone]
        return {f: FakeFuture() for f in filters}


def test_acls_apply_prune_deletes_nothing_without_apply(monkeypatch):
    stale = acl.Acl("User:partner-gone", acl.TOPIC, "rapport.intake", acl.LITERAL, "READ")
    fake = FakeAdmin([*acl.desired_acls(["demo"]), stale])
    monkeypatch.setattr(acl, "admin_client", lambda *a, **k: fake)
    runner = CliRunner()

    dry = runner.invoke(tools_cli.app, ["--bootstrap", "fake:9092", "acls", "apply", "--prune", "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert fake.deleted == [] and stale in fake.have
    assert [a["principal"] for a in report["would_delete"]] == ["User:partner-gone"] and report["deleted"] == []

    text = runner.invoke(tools_cli.app, ["--bootstrap", "fake:9092", "acls", "apply", "--prune"])
    assert text.exit_code == 0 and fake.deleted == [] and "would be deleted" in text.output, text.output

    applied = runner.invoke(tools_cli.app, ["--bootstrap", "fake:9092", "acls", "apply", "--prune", "--apply", "--json"])
    assert applied.exit_code == 0, applied.output
    assert [a["principal"] for a in json.loads(applied.stdout)["deleted"]] == ["User:partner-gone"]
    assert stale not in fake.have and len(fake.deleted) == 1


def test_acl_module_command_prunes_only_with_apply(monkeypatch, capsys):
    stale = acl.Acl("User:partner-gone", acl.TOPIC, "rapport.intake", acl.LITERAL, "READ")
    fake = FakeAdmin([*acl.desired_acls(["demo"]), stale])
    monkeypatch.setattr(acl, "admin_client", lambda *a, **k: fake)
    assert acl.main(["apply", "--prune", "--wait", "1"]) == 0
    assert fake.deleted == [] and "(dry run)" in capsys.readouterr().out
    assert acl.main(["apply", "--prune", "--apply", "--wait", "1"]) == 0
    assert len(fake.deleted) == 1


def test_one_line_never_prints_a_dsn_password():
    assert cli_common.where("postgresql://u:secret@db.example:5433/rapport?sslmode=require") == "db.example:5433/rapport"
    line = cli_common.one_line(ConnectionRefusedError(111, "Connect call failed"), postgres=DSN)
    assert line.startswith("cannot connect to Postgres at 127.0.0.1:") and "pg-secret-pw" not in line
    assert cli_common.one_line(FileNotFoundError(2, "No such file or directory", "/x")) == "/x: No such file or directory"
    assert cli_common.one_line(RuntimeError("a bug")) is None


def test_librdkafka_is_quiet_unless_debug():
    cli_common.set_debug(False)
    cfg = cli_common.librdkafka_config(3)
    assert cfg["log_level"] == 0 and cfg["socket.connection.setup.timeout.ms"] == 3000
    cli_common.set_debug(True)
    try:
        assert "log_level" not in cli_common.librdkafka_config(3)
    finally:
        cli_common.set_debug(False)


def test_help_of_json_flags_exists_on_listings():
    """--json on every listing and on the commands whose result a script reads."""
    import typer.main  # noqa: PLC0415

    from rapport_scheduler import bootstrap, settings  # noqa: PLC0415

    want = {("topics",), ("tail",), ("groups", "list"), ("groups", "reset"), ("dlq", "list"), ("dlq", "redrive"),
            ("acls", "show"), ("acls", "apply"), ("outbox", "parked"), ("timers", "parked")}
    tools = dict(_walk(typer.main.get_command(tools_cli.app)))
    service = dict(_walk(typer.main.get_command(service_cli.service_app("scheduler", settings.load, bootstrap.build))))
    missing = [p for p in want if "--json" not in {o for x in tools[p].params for o in x.opts}]
    missing += [p for p in [("migrate",), ("replay", "run"), ("replay", "verify"), ("replay", "swap"),
                            ("replay", "describe"), ("replay", "drop")]
                if "--json" not in {o for x in service[p].params for o in x.opts}]
    assert not missing, missing
    assert Path(cli.__file__).exists()
