"""What Rapport's three command lines share: ``rapport`` (cli.py), ``rapport-<svc>`` (service_cli.py)
and ``rapport-admin`` (admin.py) are Typer applications in one style, and they fail the same way.

A known operational failure — Kafka or Postgres unreachable or refusing, a file missing or
unreadable, a refusal of the tool itself — is ONE line on stderr (``<prog>: error: ...``) and exit
code 2. ``--debug`` (a global option of each command, or ``RAPPORT_DEBUG=1``) prints the traceback
first, and lets the Kafka clients log. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from typing import Any, Callable, NoReturn, TypeVar
from urllib.parse import urlsplit

import typer

T = TypeVar("T")
EXIT_ERROR = 2
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
DEBUG_HELP = "print the traceback of an error (and let the Kafka clients log)"
JSON_HELP = "machine-readable output (JSON)"
PG_CONNECT_TIMEOUT_S = 10  # a Postgres that does not answer is an error within seconds
# Bounds for the librdkafka clients of the command lines (the `acls` commands): a dead broker is an
# error within seconds, not after librdkafka's 30-60 s defaults.
KAFKA_CONNECT_TIMEOUT_S = 5.0


def typer_app(help_: str) -> typer.Typer:
    """A command group in the common style (help on -h, no completion, no pretty tracebacks)."""
    return typer.Typer(add_completion=False, no_args_is_help=True, help=help_, context_settings=CONTEXT_SETTINGS,
                       pretty_exceptions_enable=False, rich_markup_mode="rich")


def debug_option() -> Any:
    """The global ``--debug`` option (or RAPPORT_DEBUG)."""
    return typer.Option(False, "--debug", envvar="RAPPORT_DEBUG", help=DEBUG_HELP)


class CliError(Exception):
    """A refusal or a user error of a command line: one line on stderr, exit code 2."""


class _State:
    debug = False


def set_debug(debug: bool) -> None:
    _State.debug = bool(debug)
    quiet_libraries()


def debug() -> bool:
    return _State.debug


def quiet_libraries() -> None:
    """The Kafka clients' own logging (aiokafka's connection errors, librdkafka's) stays out of a
    command's output unless --debug: the command reports what failed, in one line."""
    level = logging.NOTSET if _State.debug else logging.CRITICAL
    for name in ("aiokafka", "kafka", "confluent_kafka", "rapport.librdkafka"):
        logging.getLogger(name).setLevel(level)


def librdkafka_config(connect_timeout_s: float = KAFKA_CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Configuration for a confluent-kafka client of a command line: librdkafka logs through a
    Python logger (silent unless --debug) instead of printing to stderr, and gives up on a broker
    that does not answer within ``connect_timeout_s``."""
    ms = int(connect_timeout_s * 1000)
    cfg: dict[str, Any] = {"socket.connection.setup.timeout.ms": max(ms, 1000), "socket.timeout.ms": max(ms, 10)}
    if not _State.debug:
        cfg.update({"logger": logging.getLogger("rapport.librdkafka"), "log_level": 0})
    return cfg


def where(dsn: str | None) -> str:
    """A Postgres DSN without its credentials: host:port/database."""
    if not dsn:
        return "(no DSN)"
    try:
        u = urlsplit(dsn)
        host = u.hostname or "localhost"
        port = f":{u.port}" if u.port else ""
        return f"{host}{port}{u.path or ''}"
    except ValueError:
        return "(unparsable DSN)"


def one_line(exc: BaseException, *, postgres: str | None = None, kafka: str | None = None) -> str | None:
    """The one-line explanation of a known operational failure; None for anything else (a bug)."""
    msg = _describe(exc, postgres=postgres, kafka=kafka)
    return None if msg is None else " ".join(msg.split())


def _describe(exc: BaseException, *, postgres: str | None, kafka: str | None) -> str | None:
    text = str(exc).strip()
    if isinstance(exc, CliError):
        return text
    refusal = _refusal_types()
    if refusal and isinstance(exc, refusal):
        return text
    at_kafka = f"Kafka at {kafka}" if kafka else "Kafka"
    at_pg = f"Postgres at {where(postgres)}" if postgres else "Postgres"
    try:
        from aiokafka import errors as kerr  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        kerr = None
    if kerr is not None and isinstance(exc, kerr.KafkaError):
        unreachable = (kerr.KafkaConnectionError, kerr.KafkaTimeoutError, kerr.NodeNotReadyError,
                       kerr.RequestTimedOutError)
        if isinstance(exc, unreachable):
            return f"cannot reach {at_kafka}: {text or type(exc).__name__}"
        return f"{at_kafka} refused: {text or type(exc).__name__}"
    try:
        from confluent_kafka import KafkaException  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        KafkaException = None  # type: ignore[assignment]  # noqa: N806
    if KafkaException is not None and isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else None
        detail = err.str() if hasattr(err, "str") else text
        return f"{at_kafka}: {detail}"
    try:
        import asyncpg  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        asyncpg = None  # type: ignore[assignment]
    if asyncpg is not None:
        if isinstance(exc, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                            asyncpg.InvalidCatalogNameError)):
            return f"{at_pg} refused the connection: {text}"
        if isinstance(exc, asyncpg.PostgresError):
            return f"{at_pg} refused: {text}"
        if isinstance(exc, asyncpg.InterfaceError):
            return f"{at_pg}: {text}"
    if isinstance(exc, OSError):
        if exc.filename is not None:
            return f"{exc.filename}: {exc.strerror or text}"
        what = text or ("timed out" if isinstance(exc, TimeoutError) else type(exc).__name__)
        if postgres:
            return f"cannot connect to {at_pg}: {what}"
        if kafka:
            return f"cannot reach {at_kafka}: {what}"
        return what
    return None


@functools.lru_cache(maxsize=1)
def _refusal_types() -> tuple[type, ...]:
    """Exceptions the libraries raise as refusals meant for the operator (their text is the line)."""
    found: list[type] = []
    for module, name in (("rapport_tools.kafka_ops", "ToolError"), ("rapport_tools.replay", "ReplayError"),
                         ("rapport_tools.acl", "AclError"), ("rapport_shared.db", "MigrationDrift")):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):  # pragma: no cover
            pass
    return tuple(found)


def fail(prog: str, message: str, exc: BaseException | None = None) -> NoReturn:
    """Print ``<prog>: error: <message>`` (after the traceback with --debug) and exit 2."""
    if _State.debug and exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise typer.Exit(EXIT_ERROR)


def guard(prog: str, work: Callable[[], T], *, postgres: str | None = None, kafka: str | None = None) -> T:
    """Run ``work()``; a known operational failure becomes one line on stderr and exit code 2."""
    try:
        return work()
    except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; unknown ones keep their traceback
        line = one_line(exc, postgres=postgres, kafka=kafka)
        if line is None:
            raise
        fail(prog, line, exc)


class _Outcome:
    ran = False
    code = 0


def leaf(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a command function so that :func:`invoke` knows it ran (and with which exit code, if it
    returns one) rather than, say, printing its --help."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rv = func(*args, **kwargs)
        _Outcome.ran, _Outcome.code = True, rv if isinstance(rv, int) else 0
        return rv

    return wrapper


def invoke(app: typer.Typer, prog: str, argv: list[str] | None) -> int:
    """Run a Typer application the way the former argparse ``main(argv)`` functions behaved: the
    command's exit code is returned (0, or 1 for "differs"); --help exits (SystemExit 0); a usage
    error or a failure exits with its code (SystemExit 2)."""
    _Outcome.ran, _Outcome.code = False, 0
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        app(args=args, prog_name=prog, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 0 and _Outcome.ran:
            return _Outcome.code
        raise
    return _Outcome.code
