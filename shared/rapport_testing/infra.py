"""Real PostgreSQL 15 and Kafka 4.3.1 for tests, as containers or as given addresses.

Helpers for session-scoped pytest fixtures::

    @pytest.fixture(scope="session")
    def kafka():
        handle = start_kafka()
        yield handle
        handle.stop()

The containers are the locally built images ``rapport/postgres:15`` and ``rapport/kafka:4.3.1``
(``deploy/build-images.sh --infra-only``; nothing is pulled). They run with host networking on
free ports bound to 127.0.0.1 only. Testcontainers' reaper (ryuk) is disabled because its image
cannot be pulled here, so cleanup is ours: ``stop()`` removes a container, an ``atexit`` hook
removes whatever this process started and did not remove, and each start first removes the
containers left by test processes that are no longer alive (they carry the label
``rapport.test.pid``).

Environment:

``RAPPORT_TEST_POSTGRES_DSN``
    Use this server instead of starting a container (e.g. the one ``deploy/local-infra.sh``
    starts). It is the admin DSN (a superuser; the database must exist).
``RAPPORT_TEST_KAFKA_BOOTSTRAP``
    Use this broker instead of starting a container. ``restart()`` and ``kill()`` then need
    ``RAPPORT_TEST_KAFKA_RESTART_CMD`` / ``RAPPORT_TEST_KAFKA_KILL_CMD`` (shell commands, e.g.
    ``deploy/local-infra.sh restart-kafka``); without them they raise
    :class:`InfraNotControllable` (use ``handle.skip_unless_controllable()`` in a test).
``RAPPORT_TEST_POSTGRES_IMAGE`` / ``RAPPORT_TEST_KAFKA_IMAGE``
    Other image names.

Secure profile: ``start_kafka(secure=True)`` always starts a container (``KAFKA_SECURE=1``:
SASL/PLAIN, ACLs enforced, see deploy/kafka/kafka-run.sh) with the users of
:data:`SECURE_USERS` (random passwords) or the ``users`` given; the handle's ``users``,
``security(name)``, ``aiokafka_kwargs(name)`` and ``confluent_config(name)`` give the credentials.
``RAPPORT_TEST_KAFKA_BOOTSTRAP`` does not apply to it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

# Must be set before testcontainers reads its configuration (no registry: no ryuk image).
os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"

__all__ = [
    "InfraError",
    "InfraNotControllable",
    "KafkaHandle",
    "PostgresHandle",
    "SECURE_USERS",
    "docker_available",
    "free_port",
    "start_kafka",
    "start_postgres",
]

log = logging.getLogger("rapport.testing.infra")

POSTGRES_IMAGE = os.environ.get("RAPPORT_TEST_POSTGRES_IMAGE", "rapport/postgres:15")
KAFKA_IMAGE = os.environ.get("RAPPORT_TEST_KAFKA_IMAGE", "rapport/kafka:4.3.1")
LOOPBACK = "127.0.0.1"
_TEST_LABEL = "rapport.test"
_PID_LABEL = "rapport.test.pid"
_NS_LABEL = "rapport.test.pidns"  # a pid means something only in the same pid namespace

T = TypeVar("T")


class InfraError(RuntimeError):
    """The test infrastructure could not be started or did not become ready."""


class InfraNotControllable(InfraError):
    """restart()/kill() on infrastructure that this process does not control."""


# --------------------------------------------------------------------------------------------
# small utilities


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _run_coro(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def _split_hostport(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.strip().rpartition(":")
    return host.strip("[]") or LOOPBACK, int(port)


def _tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _kafka_broker_count(host: str, port: int, timeout: float = 1.0, sasl: tuple[str, str] | None = None) -> int:
    """Raw Kafka Metadata v4 request (no topics): how many live brokers the broker reports.

    Cheap and silent (no client library logs) while the broker is starting: it opens its port
    before it processes requests. The same probe as deploy/kafka/healthcheck.sh. ``sasl`` =
    (user, password): authenticate with SASL/PLAIN first (secure profile).
    """
    body = struct.pack(">hhih", 3, 4, 1, -1) + struct.pack(">ib", 0, 0)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        if sasl is not None:
            _sasl_plain_auth(s, *sasl)
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 16:
            chunk = s.recv(16 - len(buf))
            if not chunk:
                break
            buf += chunk
    if len(buf) < 16:
        return 0
    _size, corr, _throttle, count = struct.unpack(">iiii", buf)
    return count if corr == 1 else 0


def _sasl_plain_auth(sock: socket.socket, user: str, password: str) -> None:
    """SaslHandshake v1 (PLAIN) + SaslAuthenticate v0 on a raw socket; OSError if refused."""

    def call(api_key: int, version: int, corr: int, payload: bytes) -> bytes:
        body = struct.pack(">hhih", api_key, version, corr, -1) + payload
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", head)
        answer = _recv_exact(sock, size)
        if struct.unpack(">i", answer[:4])[0] != corr:
            raise OSError("kafka: unexpected correlation id")
        return answer[4:]

    mech = b"PLAIN"
    if struct.unpack(">h", call(17, 1, 101, struct.pack(">h", len(mech)) + mech)[:2])[0] != 0:
        raise OSError("kafka: SASL mechanism PLAIN not enabled")
    token = b"\0" + user.encode() + b"\0" + password.encode()
    error = struct.unpack(">h", call(36, 0, 102, struct.pack(">i", len(token)) + token)[:2])[0]
    if error != 0:
        raise OSError(f"kafka: SASL authentication failed (error {error})")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("kafka: connection closed")
        buf += chunk
    return buf


def _docker_client() -> Any:
    from testcontainers.core.docker_client import DockerClient  # noqa: PLC0415

    return DockerClient().client


_started: dict[str, Any] = {}  # container id -> docker container (this process's)
_started_lock = threading.Lock()


def _remove_container(container: Any) -> None:
    try:
        container.remove(force=True, v=True)
    except Exception as exc:  # noqa: BLE001 - already gone is fine
        if "No such container" not in str(exc) and "404" not in str(exc):
            log.warning("could not remove container %s: %s", getattr(container, "short_id", "?"), exc)
    with _started_lock:
        _started.pop(getattr(container, "id", ""), None)


@atexit.register
def _remove_all_started() -> None:
    with _started_lock:
        leftovers = list(_started.values())
    for container in leftovers:
        _remove_container(container)


def _pid_namespace() -> str:
    """This process's pid namespace and boot: a pid label is compared only within the same."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()  # noqa: SIM115
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _remove_stale_containers() -> None:
    """Remove test containers whose creating process is gone (e.g. a killed pytest).

    Only containers created from this pid namespace (same boot) are considered, so the live
    containers of a test run elsewhere on the same engine are never touched.
    """
    ns = _pid_namespace()
    if not ns:
        return
    try:
        client = _docker_client()
        for c in client.containers.list(all=True, filters={"label": [_TEST_LABEL, f"{_NS_LABEL}={ns}"]}):
            pid = int(c.labels.get(_PID_LABEL, "0") or 0)
            if pid and pid != os.getpid() and not _pid_alive(pid):
                log.info("removing stale test container %s (pid %s gone)", c.name, pid)
                c.remove(force=True, v=True)
    except Exception as exc:  # noqa: BLE001 - best effort
        log.debug("stale container cleanup skipped: %s", exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_container(image: str, env: dict[str, str], kind: str) -> Any:
    """Start ``image`` with host networking; returns the testcontainers DockerContainer."""
    from testcontainers.core.config import testcontainers_config  # noqa: PLC0415
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    testcontainers_config.ryuk_disabled = True
    _remove_stale_containers()
    client = _docker_client()
    try:
        client.images.get(image)
    except Exception as exc:  # noqa: BLE001
        raise InfraError(
            f"image {image} is not built here ({exc}); run: bash deploy/build-images.sh --infra-only"
        ) from exc
    name = f"rapport-test-{kind}-{os.getpid()}-{int(time.time() * 1000) % 10_000_000}"
    container = (
        DockerContainer(image)
        .with_name(name)
        .with_envs(**env)
        .with_kwargs(network="host", labels={_TEST_LABEL: kind, _PID_LABEL: str(os.getpid()), _NS_LABEL: _pid_namespace()})
    )
    container.start()
    wrapped = container.get_wrapped_container()
    with _started_lock:
        _started[wrapped.id] = wrapped
    return container


def _container_logs_tail(container: Any, lines: int = 40) -> str:
    try:
        return container.get_wrapped_container().logs(tail=lines).decode(errors="replace")
    except Exception as exc:  # noqa: BLE001
        return f"(no logs: {exc})"


def _check_running(container: Any, what: str) -> None:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    if wrapped.status not in ("running", "created", "restarting"):
        raise InfraError(f"{what} container exited ({wrapped.status}):\n{_container_logs_tail(container)}")


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class PostgresHandle:
    """A PostgreSQL server: ``admin_dsn`` is a superuser DSN on the database ``rapport``."""

    admin_dsn: str
    host: str
    port: int
    user: str = "postgres"
    password: str = "postgres"
    database: str = "rapport"
    startup_seconds: float = 0.0
    external: bool = False
    container: Any = field(default=None, repr=False)

    def dsn(self, user: str | None = None, password: str | None = None, database: str | None = None) -> str:
        """A DSN on this server for another role and/or database."""
        return (
            f"postgresql://{user or self.user}:{password or self.password}"
            f"@{self.host}:{self.port}/{database or self.database}"
        )

    def stop(self) -> None:
        """Remove the container (nothing for an external server). Idempotent."""
        if self.container is not None:
            _remove_container(self.container.get_wrapped_container())
            self.container = None


async def _pg_try_connect(dsn: str) -> None:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(dsn, timeout=2)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def _wait_postgres(dsn: str, timeout: float, container: Any = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if container is not None:
            _check_running(container, "postgres")
        try:
            _run_coro(lambda: _pg_try_connect(dsn))
            return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = exc
        time.sleep(0.2)
    tail = _container_logs_tail(container) if container is not None else ""
    raise InfraError(f"postgres at {dsn} not ready after {timeout:.0f}s: {last!r}\n{tail}")


def start_postgres(timeout: float = 60.0, image: str | None = None) -> PostgresHandle:
    """Start ``rapport/postgres:15`` on a free loopback port and wait for a real connection.

    With ``RAPPORT_TEST_POSTGRES_DSN`` set, only waits for that server instead.
    """
    t0 = time.monotonic()
    external = os.environ.get("RAPPORT_TEST_POSTGRES_DSN")
    if external:
        from urllib.parse import urlsplit  # noqa: PLC0415

        parts = urlsplit(external)
        _wait_postgres(external, timeout)
        handle = PostgresHandle(
            admin_dsn=external,
            host=parts.hostname or LOOPBACK,
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or "",
            database=(parts.path or "/rapport").lstrip("/") or "rapport",
            startup_seconds=time.monotonic() - t0,
            external=True,
        )
        log.info("postgres: using RAPPORT_TEST_POSTGRES_DSN %s:%s", handle.host, handle.port)
        return handle

    port = free_port()
    container = _start_container(
        image or POSTGRES_IMAGE,
        {
            "PGPORT": str(port),
            "POSTGRES_LISTEN": LOOPBACK,
            "POSTGRES_PASSWORD": "postgres",
            "POSTGRES_DB": "rapport",
            "POSTGRES_FAST": "1",
        },
        "postgres",
    )
    dsn = f"postgresql://postgres:postgres@{LOOPBACK}:{port}/rapport"
    try:
        _wait_postgres(dsn, timeout, container)
    except BaseException:
        _remove_container(container.get_wrapped_container())
        raise
    handle = PostgresHandle(
        admin_dsn=dsn, host=LOOPBACK, port=port, startup_seconds=time.monotonic() - t0, container=container
    )
    log.info("postgres: %s ready on %s:%s in %.1fs", image or POSTGRES_IMAGE, LOOPBACK, port, handle.startup_seconds)
    return handle


# --------------------------------------------------------------------------------------------
# Kafka


async def _kafka_metadata_brokers(bootstrap: str, client_kwargs: dict[str, Any] | None = None) -> int:
    from aiokafka import AIOKafkaClient  # noqa: PLC0415

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, metadata_max_age_ms=1000,
                            **(client_kwargs or {}))
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers())
    finally:
        await client.close()


def _wait_kafka(bootstrap: str, timeout: float, container: Any = None,
                sasl: tuple[str, str] | None = None) -> None:
    host, port = _split_hostport(bootstrap.split(",")[0])
    deadline = time.monotonic() + timeout
    last: Any = "port closed"
    # 1) silent raw probe until the broker answers Metadata with a live broker ...
    while time.monotonic() < deadline:
        if container is not None:
            _check_running(container, "kafka")
        try:
            if _tcp_open(host, port) and _kafka_broker_count(host, port, sasl=sasl) >= 1:
                break
            last = "no live broker in metadata yet"
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    else:
        tail = _container_logs_tail(container) if container is not None else ""
        raise InfraError(f"kafka at {bootstrap} not ready after {timeout:.0f}s: {last}\n{tail}")
    # 2) ... then confirm with the client library the services use.
    while True:
        try:
            kw = None if sasl is None else {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                            "sasl_plain_username": sasl[0], "sasl_plain_password": sasl[1]}
            if _run_coro(lambda: _kafka_metadata_brokers(bootstrap, kw)) >= 1:
                return
            last = "aiokafka: no broker in metadata"
        except Exception as exc:  # noqa: BLE001
            last = exc
        if time.monotonic() >= deadline:
            raise InfraError(f"kafka at {bootstrap}: aiokafka metadata failed: {last!r}")
        time.sleep(0.3)


@dataclass
class KafkaHandle:
    """A Kafka broker at ``bootstrap`` (``host:port``)."""

    bootstrap: str
    startup_seconds: float = 0.0
    external: bool = False
    container: Any = field(default=None, repr=False)
    restart_cmd: str | None = None
    kill_cmd: str | None = None
    ready_timeout: float = 90.0
    # Secure profile (start_kafka(secure=True)): SASL/PLAIN users name -> password; admin is a super user.
    secure: bool = False
    users: dict[str, str] = field(default_factory=dict, repr=False)
    admin_user: str = "admin"
    # The secure broker's TLS listener (SASL_SSL) and the development CA that signed its certificate.
    tls_bootstrap: str | None = None
    tls_cafile: str | None = None

    def security(self, user: str | None = None, password: str | None = None, *, tls: bool = False) -> Any:
        """A :class:`rapport_shared.settings.KafkaSecurity` for ``user`` (default the admin);
        PLAINTEXT for a broker that is not secure. ``password`` overrides the known one; ``tls``:
        SASL_SSL for :attr:`tls_bootstrap`, trusting :attr:`tls_cafile`."""
        from rapport_shared.settings import KafkaSecurity  # noqa: PLC0415

        if not self.secure:
            return KafkaSecurity()
        user = user or self.admin_user
        return KafkaSecurity(security_protocol="SASL_SSL" if tls else "SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                             sasl_username=user, sasl_password=password if password is not None else self.users[user],
                             ssl_cafile=(self.tls_cafile or "") if tls else "")

    def aiokafka_kwargs(self, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        """``bootstrap_servers`` plus the SASL options of ``user``, for any aiokafka client."""
        return {"bootstrap_servers": self.bootstrap, **self.security(user, password).aiokafka_kwargs()}

    def confluent_config(self, user: str | None = None, password: str | None = None) -> dict[str, Any]:
        """``bootstrap.servers`` plus the SASL settings of ``user``, for confluent-kafka clients."""
        return {"bootstrap.servers": self.bootstrap, **self.security(user, password).confluent_config()}

    @property
    def _sasl(self) -> tuple[str, str] | None:
        return (self.admin_user, self.users[self.admin_user]) if self.secure else None

    @property
    def controllable(self) -> bool:
        """Whether restart()/kill() work (a container we started, or commands were given)."""
        return self.container is not None or bool(self.restart_cmd)

    def skip_unless_controllable(self) -> None:
        """pytest.skip() the calling test when restart()/kill() are unsupported."""
        if not self.controllable:
            import pytest  # noqa: PLC0415

            pytest.skip("Kafka is external (RAPPORT_TEST_KAFKA_BOOTSTRAP) and cannot be restarted here")

    def _require(self, what: str) -> None:
        if not self.controllable:
            raise InfraNotControllable(
                f"cannot {what} Kafka at {self.bootstrap}: it was given by RAPPORT_TEST_KAFKA_BOOTSTRAP "
                "and no RAPPORT_TEST_KAFKA_RESTART_CMD/RAPPORT_TEST_KAFKA_KILL_CMD is set"
            )

    def restart(self, timeout: float | None = None) -> float:
        """Stop the broker gracefully (SIGTERM) and start the same one again, keeping its data.

        Waits until it answers metadata again; returns the seconds it took. Also brings back a
        broker after kill().
        """
        self._require("restart")
        t0 = time.monotonic()
        if self.container is not None:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status == "running":
                wrapped.stop(timeout=30)
            wrapped.start()
        else:
            subprocess.run(self.restart_cmd, shell=True, check=True)  # noqa: S602
        _wait_kafka(self.bootstrap, timeout or self.ready_timeout, self.container, sasl=self._sasl)
        took = time.monotonic() - t0
        log.info("kafka: restarted %s in %.1fs", self.bootstrap, took)
        return took

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown). restart() brings it back; stop() removes it."""
        self._require("kill")
        if self.container is not None:
            self.container.get_wrapped_container().kill()
        elif self.kill_cmd:
            subprocess.run(self.kill_cmd, shell=True, check=True)  # noqa: S602
        else:
            raise InfraNotControllable("RAPPORT_TEST_KAFKA_KILL_CMD is not set")

    def stop(self) -> None:
        """Remove the container (nothing for an external broker) and the copy of its CA. Idempotent."""
        if self.container is not None:
            _remove_container(self.container.get_wrapped_container())
            self.container = None
        if self.tls_cafile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tls_cafile)
            self.tls_cafile = None

    def logs(self, tail: int = 200) -> str:
        """The container's last log lines ('' for an external broker)."""
        return _container_logs_tail(self.container, tail) if self.container is not None else ""


# The principals of the secure profile (docs/partners.md "Access"); admin is the super user.
SECURE_USERS = ("admin", "intake", "scheduler", "outcomes", "notifier", "partner-demo")


def docker_available() -> bool:
    """Whether a Docker engine answers (start_kafka(secure=True) needs one)."""
    try:
        _docker_client().ping()
        return True
    except Exception:  # noqa: BLE001
        return False


def start_kafka(timeout: float = 90.0, image: str | None = None, *, secure: bool = False,
                users: dict[str, str] | None = None) -> KafkaHandle:
    """Start ``rapport/kafka:4.3.1`` (KRaft, one node) on free loopback ports; wait until ready.

    With ``RAPPORT_TEST_KAFKA_BOOTSTRAP`` set, only waits for that broker instead — unless
    ``secure``: then a container with ``KAFKA_SECURE=1`` is always started, with ``users``
    (name -> password; default :data:`SECURE_USERS` with random passwords; ``admin`` is the super
    user and must be among them).
    """
    t0 = time.monotonic()
    external = os.environ.get("RAPPORT_TEST_KAFKA_BOOTSTRAP")
    if secure:
        return _start_secure_kafka(timeout, image, users)
    if external:
        _wait_kafka(external, timeout)
        restart_cmd = os.environ.get("RAPPORT_TEST_KAFKA_RESTART_CMD") or None
        kill_cmd = os.environ.get("RAPPORT_TEST_KAFKA_KILL_CMD") or None
        log.info("kafka: using RAPPORT_TEST_KAFKA_BOOTSTRAP %s", external)
        return KafkaHandle(
            bootstrap=external,
            startup_seconds=time.monotonic() - t0,
            external=True,
            restart_cmd=restart_cmd,
            kill_cmd=kill_cmd,
            ready_timeout=timeout,
        )

    port, controller_port = _two_free_ports()
    container = _start_container(
        image or KAFKA_IMAGE,
        {
            **_kafka_env(port, controller_port),
        },
        "kafka",
    )
    bootstrap = f"{LOOPBACK}:{port}"
    try:
        _wait_kafka(bootstrap, timeout, container)
    except BaseException:
        _remove_container(container.get_wrapped_container())
        raise
    handle = KafkaHandle(
        bootstrap=bootstrap, startup_seconds=time.monotonic() - t0, container=container, ready_timeout=timeout
    )
    log.info("kafka: %s ready on %s in %.1fs", image or KAFKA_IMAGE, bootstrap, handle.startup_seconds)
    return handle


def _two_free_ports() -> tuple[int, int]:
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    return port, controller_port


def _kafka_env(port: int, controller_port: int) -> dict[str, str]:
    """The loopback, host-network broker every test Kafka container runs (plain or secure)."""
    return {
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "KAFKA_LISTEN_HOST": LOOPBACK,
        "KAFKA_ADVERTISED_HOST": LOOPBACK,
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
    }


def _read_container_file(container: Any, path: str, prefix: str) -> str:
    """Copy a file out of a running container into a temporary file; returns its path."""
    code, data = container.get_wrapped_container().exec_run(["cat", path])
    if code != 0:
        raise InfraError(f"{path} is not in the kafka container (an image from before the TLS listener?); "
                         f"run: bash deploy/build-images.sh --infra-only ({data.decode(errors='replace')[-200:]})")
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return name


def _require_secure_image(container: Any, timeout: float) -> None:
    """Fail fast on an image whose kafka-run.sh predates KAFKA_SECURE (it would start a broker
    without SASL, and the SASL probe would only time out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_running(container, "kafka")
        text = _container_logs_tail(container, 400)
        if "kafka-run: secure profile" in text:
            return
        if "kafka-run: formatting" in text or "already formatted" in text:
            raise InfraError(f"{container.image} ignores KAFKA_SECURE=1 (an image from before the secure "
                             "profile); run: bash deploy/build-images.sh --infra-only")
        time.sleep(0.2)
    raise InfraError(f"kafka container did not start its run script within {timeout:.0f}s")


def _start_secure_kafka(timeout: float, image: str | None, users: dict[str, str] | None) -> KafkaHandle:
    t0 = time.monotonic()
    users = dict(users) if users is not None else {u: secrets.token_urlsafe(12) for u in SECURE_USERS}
    if "admin" not in users:
        raise ValueError("the secure profile needs an 'admin' user (the super user)")
    port, controller_port = _two_free_ports()
    tls_port = free_port()
    while tls_port in (port, controller_port):
        tls_port = free_port()
    container = _start_container(
        image or KAFKA_IMAGE,
        {
            **_kafka_env(port, controller_port),
            "KAFKA_SECURE": "1",
            "KAFKA_SASL_USERS": ",".join(f"{u}:{p}" for u, p in users.items()),
            "KAFKA_SUPER_USERS": "admin",
            "KAFKA_TLS_PORT": str(tls_port),  # a development certificate made by kafka-run.sh
        },
        "kafka-secure",
    )
    bootstrap = f"{LOOPBACK}:{port}"
    try:
        _require_secure_image(container, timeout)
        _wait_kafka(bootstrap, timeout, container, sasl=("admin", users["admin"]))
        cafile = _read_container_file(container, "/var/lib/kafka/tls/ca.pem", "kafka-ca-")
    except BaseException:
        _remove_container(container.get_wrapped_container())
        raise
    handle = KafkaHandle(
        bootstrap=bootstrap, startup_seconds=time.monotonic() - t0, container=container, ready_timeout=timeout,
        secure=True, users=users, tls_bootstrap=f"{LOOPBACK}:{tls_port}", tls_cafile=cafile,
    )
    log.info("kafka (secure): %s ready on %s in %.1fs", image or KAFKA_IMAGE, bootstrap, handle.startup_seconds)
    return handle
