"""The benchmarks' infrastructure: real PostgreSQL 15 and Kafka 4.3.1 started exactly as the test
suite starts them (``rapport_testing.infra``: the locally built images, host networking,
loopback ports, removed on exit), and the in-process logging set-up.

``RAPPORT_TEST_POSTGRES_DSN`` / ``RAPPORT_TEST_KAFKA_BOOTSTRAP`` point it at running servers
instead, as they do for the tests.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rapport_testing import infra


class SetupError(RuntimeError):
    """The benchmarks cannot start: what is missing and how to get it."""


def check_prerequisites() -> None:
    """Fail early, with the command to run, when the engine or an image is missing."""
    need_pg = not os.environ.get("RAPPORT_TEST_POSTGRES_DSN")
    need_kafka = not os.environ.get("RAPPORT_TEST_KAFKA_BOOTSTRAP")
    if not (need_pg or need_kafka):
        return
    if not infra.docker_available():
        raise SetupError("the Docker engine does not answer: run `bash deploy/engine.sh` (or point the benchmarks at "
                         "running servers with RAPPORT_TEST_POSTGRES_DSN and RAPPORT_TEST_KAFKA_BOOTSTRAP)")
    import docker  # noqa: PLC0415 - comes with testcontainers

    client = docker.from_env()
    missing = []
    for image, needed in ((infra.POSTGRES_IMAGE, need_pg), (infra.KAFKA_IMAGE, need_kafka)):
        if not needed:
            continue
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        raise SetupError(f"image(s) {', '.join(missing)} not built here (nothing is pulled): "
                         "run `bash deploy/build-images.sh --infra-only`")


@dataclass
class Stack:
    postgres: infra.PostgresHandle
    kafka: infra.KafkaHandle

    @property
    def admin_dsn(self) -> str:
        return self.postgres.admin_dsn

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def describe(self) -> str:
        pg = "external" if self.postgres.external else f"{infra.POSTGRES_IMAGE} (POSTGRES_FAST=1: fsync off)"
        kafka = "external" if self.kafka.external else infra.KAFKA_IMAGE
        return f"postgres {pg} on :{self.postgres.port} ({self.postgres.startup_seconds:.1f} s); " \
               f"kafka {kafka} at {self.kafka.bootstrap} ({self.kafka.startup_seconds:.1f} s)"


@contextmanager
def running_stack() -> Iterator[Stack]:
    """Postgres and Kafka, started side by side; both removed on the way out (also on errors)."""
    check_prerequisites()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(infra.start_postgres), pool.submit(infra.start_kafka)]
        concurrent.futures.wait(futures)
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for f in futures:
            if f.exception() is None:
                f.result().stop()
        raise failed[0]
    stack = Stack(futures[0].result(), futures[1].result())
    try:
        yield stack
    finally:
        stack.kafka.stop()
        stack.postgres.stop()


def log_to_file(path: Path) -> None:
    """Configure logging as a service does (JSON lines, INFO: the consumer writes one line per
    record, and that cost belongs in the figure) but into ``path``, keeping the console for the table."""
    from rapport_shared.logging import configure_logging  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    real = sys.stderr
    sys.stderr = stream  # configure_logging binds the stream it finds there
    try:
        configure_logging("bench", "json", "INFO")
    finally:
        sys.stderr = real
    logging.getLogger("rapport.testing.infra").setLevel(logging.INFO)
