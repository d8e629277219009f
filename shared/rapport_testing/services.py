"""Run Rapport services as separate OS processes for end-to-end and crash tests.

Each service of the system (:data:`SERVICES`, from the registrations: ``rapport_tools.services``) runs
``python -m <its package> run`` with its own environment (own Postgres role, own HTTP port);
stdout/stderr go to a log file whose tail is shown when a start fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rapport_shared.topics import SHARED_TOPICS
from rapport_tools import services as registry

# The system of the end-to-end tests is the event flow: the installed services that publish on the
# shared topics, in their declared order. A read-only one (the console) needs settings of its own
# and is started by its own tests' fixture.
SERVICES = tuple(name for name, spec in registry.registered().items() if set(spec.kafka.writes) & set(SHARED_TOPICS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_dsn(admin_dsn: str, service: str, password: str) -> str:
    """The admin DSN with the service role's credentials instead."""
    rest = admin_dsn.split("@", 1)[1]
    return f"postgresql://rapport_{service}:{password}@{rest}"


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, extra_env: dict[str, str] | None = None, wait_ready: bool = True) -> "ServiceProcess":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_CRASH_")}  # crash only when asked
        env = {**base, **self.env, "RAPPORT_HTTP_PORT": str(self.port), "RAPPORT_HTTP_HOST": "127.0.0.1", **(extra_env or {})}
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"\n===== start #{self.starts} {time.strftime('%H:%M:%S')} extra_env={extra_env or {}}\n")
        log.flush()
        self.proc = subprocess.Popen([sys.executable, "-m", registry.get(self.name).package, "run"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout}s: {last}\n{self.tail()}")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushes — a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class System:
    """The four services as processes against one Kafka and one Postgres."""

    services: dict[str, ServiceProcess]

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    def start_all(self) -> None:
        for s in self.services.values():
            s.start(wait_ready=False)
        try:
            for s in self.services.values():
                s.wait_ready()
        except BaseException:
            self.stop_all()  # leave no orphan processes behind a failed start
            raise

    def stop_all(self) -> None:
        for s in self.services.values():
            s.stop()

    def restart(self, name: str, extra_env: dict[str, str] | None = None, wait_ready: bool = True) -> ServiceProcess:
        svc = self.services[name]
        svc.stop()
        return svc.start(extra_env, wait_ready=wait_ready)


def build_system(*, admin_dsn: str, kafka_bootstrap: str, passwords: dict[str, str], jwks: str, log_dir: Path,
                 extra_env: dict[str, str] | None = None) -> System:
    log_dir.mkdir(parents=True, exist_ok=True)
    services = {}
    for name in SERVICES:
        env = {
            "RAPPORT_SERVICE_NAME": name,
            "RAPPORT_ENVIRONMENT": "test",
            "RAPPORT_DATABASE_DSN": role_dsn(admin_dsn, name, passwords[name]),
            "RAPPORT_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "RAPPORT_AUTH_JWKS": jwks,
            "RAPPORT_LOG_FORMAT": "json",
            "RAPPORT_MIGRATE_ON_START": "true",
            "RAPPORT_RELAY_POLL_INTERVAL_S": "0.5",
            **(extra_env or {}),
        }
        services[name] = ServiceProcess(name, env, log_dir)
    return System(services)
