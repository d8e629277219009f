"""The secure profile (issue 7, "Access"; docs/partners.md): a real Kafka 4.3.1 with SASL/PLAIN and
the StandardAuthorizer (``KAFKA_SECURE=1``), the ACL set of ``rapport_tools.acl`` applied with
confluent-kafka, and real clients (aiokafka, the library the services use) for each principal.

Proves: partners read the shared topics and nothing private, cannot write and cannot use another
consumer group; each service writes only its own topics; only the notifier reads
``rapport.private.*``; wrong passwords and unauthenticated clients are refused; the shared
runtime's SASL plumbing (FastStream broker, ensure_topics, simulated clock) works with a service
principal; applying the ACLs twice is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from rapport_tools import acl
from rapport_testing.infra import KafkaHandle, _sasl_plain_auth, docker_available, start_kafka
from rapport_shared.topics import COURSE, ERASURES, INTAKE, NOTIFICATIONS, OUTCOMES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_kafka():
    if os.environ.get("RAPPORT_TEST_NO_DOCKER") == "1" or (os.environ.get("RAPPORT_TEST_KAFKA_BOOTSTRAP") and not docker_available()):
        pytest.skip("the secure profile needs a Kafka container; no Docker engine (local-infra mode)")
    handle = start_kafka(secure=True)
    try:
        report = acl.apply_acls(handle.bootstrap, handle.security("admin"), partners=["demo"])
        assert report.created and not report.extra, report.summary()
        yield handle
    finally:
        handle.stop()


async def _produce(k: KafkaHandle, user: str, topic: str, value: bytes = b"{}", key: bytes | None = None,
                   **kw) -> None:
    options = {"acks": "all", "enable_idempotence": True, "request_timeout_ms": 10_000, **kw}
    producer = AIOKafkaProducer(**k.aiokafka_kwargs(user), **options)
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 20)
    finally:
        await producer.stop()


async def _read_assigned(k: KafkaHandle, user: str, topic: str, want: bytes, timeout: float = 20) -> list[bytes]:
    """Read ``topic`` from the beginning without a group (assign + seek) until ``want`` is seen."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=10_000, **k.aiokafka_kwargs(user))
    await consumer.start()
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
        assert parts, f"{user} does not see {topic}"
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        seen: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while want not in seen:
            assert asyncio.get_running_loop().time() < deadline, f"{want!r} not read from {topic}"
            batch = await consumer.getmany(timeout_ms=1000)
            seen += [r.value for records in batch.values() for r in records]
        return seen
    finally:
        await consumer.stop()


async def _assert_cannot_read(k: KafkaHandle, user: str, topic: str, group: str | None = None) -> None:
    """``user`` may not read ``topic``. Without DESCRIBE the broker hides the topic and aiokafka's
    consumer refuses to start on it; with DESCRIBE but no READ (intake: WRITE implies DESCRIBE)
    the fetch is refused. Either way: TopicAuthorizationFailedError, with or without a group.
    (Assigned without a subscription and without DESCRIBE, aiokafka only logs.)"""
    consumer = AIOKafkaConsumer(topic, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=10_000, **k.aiokafka_kwargs(user))
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(consumer.start(), 30)
            for _ in range(10):
                await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
    finally:
        await consumer.stop()


async def _read_in_group(k: KafkaHandle, user: str, topic: str, group: str, want: bytes, timeout: float = 30) -> None:
    consumer = AIOKafkaConsumer(topic, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=10_000, **k.aiokafka_kwargs(user))
    try:
        await consumer.start()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            assert asyncio.get_running_loop().time() < deadline, f"{want!r} not read from {topic} in {group}"
            batch = await consumer.getmany(timeout_ms=1000)
            if any(r.value == want for records in batch.values() for r in records):
                await consumer.commit()
                return
    finally:
        await consumer.stop()


async def _visible_topics(k: KafkaHandle, user: str) -> set[str]:
    consumer = AIOKafkaConsumer(**k.aiokafka_kwargs(user))
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------ partners


async def test_partner_reads_a_shared_topic_in_its_own_group(secure_kafka: KafkaHandle) -> None:
    marker = f"course-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "scheduler", COURSE, marker)
    await _read_in_group(secure_kafka, "partner-demo", COURSE, "partner-demo-analytics", marker)


async def test_partner_cannot_read_the_private_topic(secure_kafka: KafkaHandle) -> None:
    await _produce(secure_kafka, "intake", PRIVATE_CONTACTS, b"secret", key=b"person-1")
    await _assert_cannot_read(secure_kafka, "partner-demo", PRIVATE_CONTACTS)
    # ... not even in its own consumer group
    await _assert_cannot_read(secure_kafka, "partner-demo", PRIVATE_CONTACTS, group="partner-demo-x")
    # the topic is invisible to the partner, the four shared ones are what it sees
    assert await _visible_topics(secure_kafka, "partner-demo") == {INTAKE, COURSE, OUTCOMES, NOTIFICATIONS}


async def test_partner_cannot_write_a_shared_topic(secure_kafka: KafkaHandle) -> None:
    # an idempotent producer does not even get a producer id (no IDEMPOTENT_WRITE) ...
    with pytest.raises(ClusterAuthorizationFailedError):
        await _produce(secure_kafka, "partner-demo", COURSE, b"forged")
    # ... and a plain one is refused on the topic
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure_kafka, "partner-demo", COURSE, b"forged", enable_idempotence=False, acks=1)


async def test_partner_cannot_use_a_group_outside_its_prefix(secure_kafka: KafkaHandle) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await _read_in_group(secure_kafka, "partner-demo", INTAKE, "rapport-scheduler", b"never", timeout=15)


# ------------------------------------------------------------------------------ services


async def test_service_writes_its_own_topic_with_an_idempotent_producer(secure_kafka: KafkaHandle) -> None:
    # enable_idempotence=True works with WRITE on the topic alone (no IDEMPOTENT_WRITE on the cluster)
    marker = f"outcome-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "outcomes", OUTCOMES, marker)
    await _read_in_group(secure_kafka, "scheduler", OUTCOMES, "rapport-scheduler", marker)


async def test_service_cannot_write_another_services_topic(secure_kafka: KafkaHandle) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure_kafka, "scheduler", OUTCOMES, b"forged")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure_kafka, "notifier", INTAKE, b"forged")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure_kafka, "scheduler", PRIVATE_CONTACTS, b"forged", key=b"p")


async def test_only_the_notifier_reads_the_private_topic(secure_kafka: KafkaHandle) -> None:
    marker = f"contact-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "intake", PRIVATE_CONTACTS, marker, key=b"person-2")
    await _read_in_group(secure_kafka, "notifier", PRIVATE_CONTACTS, "rapport-notifier-contacts", marker)
    for other in ("intake", "scheduler", "outcomes"):
        await _assert_cannot_read(secure_kafka, other, PRIVATE_CONTACTS, group=f"rapport-{other}")


async def test_data_keys_reach_only_the_notifier_and_erasure_notices_only_outcomes(secure_kafka: KafkaHandle) -> None:
    """Crypto-shredding (docs/privacy.md): the wrapped per-person data keys are as private as the
    contacts; the erasure notices (pseudonymous id + organisation) go to outcomes, never a partner."""
    marker = f"key-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "intake", PRIVATE_PERSON_KEYS, marker, key=b"person-3")
    await _read_in_group(secure_kafka, "notifier", PRIVATE_PERSON_KEYS, "rapport-notifier-contacts", marker)
    for other in ("scheduler", "outcomes", "partner-demo"):
        await _assert_cannot_read(secure_kafka, other, PRIVATE_PERSON_KEYS)
    notice = f"erased-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "intake", ERASURES, notice, key=b"person-3")
    await _read_in_group(secure_kafka, "outcomes", ERASURES, "rapport-outcomes-erasures", notice)
    for other in ("scheduler", "partner-demo"):
        await _assert_cannot_read(secure_kafka, other, ERASURES)
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(secure_kafka, "outcomes", ERASURES, b"forged", key=b"p")


async def test_service_reads_only_what_it_consumes(secure_kafka: KafkaHandle) -> None:
    # the scheduler consumes intake and outcomes, not notifications
    await _assert_cannot_read(secure_kafka, "scheduler", NOTIFICATIONS, group="rapport-scheduler")
    seen = await _visible_topics(secure_kafka, "scheduler")
    assert seen >= {INTAKE, OUTCOMES, COURSE} and NOTIFICATIONS not in seen, seen


# ------------------------------------------------------------------------------ authentication


async def test_wrong_password_is_refused(secure_kafka: KafkaHandle, caplog: pytest.LogCaptureFixture) -> None:
    host, port = secure_kafka.bootstrap.rsplit(":", 1)
    # the broker's own answer, at the protocol level: SaslAuthenticate -> error 58 (SASL_AUTHENTICATION_FAILED)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        with pytest.raises(OSError, match=r"SASL authentication failed \(error 58\)"):
            _sasl_plain_auth(sock, "partner-demo", "wrong")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        _sasl_plain_auth(sock, "partner-demo", secure_kafka.users["partner-demo"])  # the control
    # aiokafka: cannot bootstrap, and says why
    producer = AIOKafkaProducer(request_timeout_ms=5000, **secure_kafka.aiokafka_kwargs("partner-demo", "wrong"))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()
    assert "SaslAuthenticationFailed" in caplog.text
    # confluent-kafka (librdkafka): no metadata
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    with pytest.raises(KafkaException):
        AdminClient(secure_kafka.confluent_config("admin", "wrong")).list_topics(timeout=5)


async def test_unauthenticated_client_is_refused(secure_kafka: KafkaHandle) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), 30)
    await producer.stop()


# ------------------------------------------------------------------------------ plumbing


async def test_runtime_clients_use_the_service_credentials(secure_kafka: KafkaHandle) -> None:
    """make_broker (FastStream), ensure_topics and the simulated clock with SASL settings."""
    from datetime import datetime, timezone

    from rapport_shared.clock import SimulatedClock, publish_tick
    from rapport_shared.kafka import ensure_topics, make_broker

    sched = secure_kafka.security("scheduler")
    # the service ensures its topics: all exist already (created by apply_acls) -> nothing to do
    await ensure_topics(secure_kafka.bootstrap, [COURSE, acl.service_dlq_topics("scheduler")[0]], 3, 1,
                        security=sched)
    broker = make_broker(secure_kafka.bootstrap, client_id="rapport-scheduler", security=sched)
    await broker.start()
    try:
        marker = f"faststream-{uuid.uuid4()}".encode()
        await broker.publish(marker, COURSE)
    finally:
        await broker.stop()
    await _read_in_group(secure_kafka, "notifier", COURSE, "rapport-notifier", marker)

    # the clock topic is written by the driver (admin here) and read by services without a group
    to = datetime(2031, 5, 4, 9, 0, tzinfo=timezone.utc)
    await publish_tick(secure_kafka.bootstrap, to, security=secure_kafka.security("admin"))
    clock = SimulatedClock(secure_kafka.bootstrap, security=sched)
    await clock.start(timeout=30)
    try:
        assert clock.now() == to
    finally:
        await clock.stop()
    with pytest.raises(TopicAuthorizationFailedError):
        await publish_tick(secure_kafka.bootstrap, datetime(2031, 5, 5, tzinfo=timezone.utc), security=sched)


async def test_faststream_broker_from_environment(secure_kafka: KafkaHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the services do: RAPPORT_KAFKA_SASL_* in the environment, make_broker(bootstrap, id)."""
    from rapport_shared.kafka import make_broker

    monkeypatch.setenv("RAPPORT_KAFKA_SASL_USERNAME", "intake")
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_PASSWORD", secure_kafka.users["intake"])
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_MECHANISM", "PLAIN")
    broker = make_broker(secure_kafka.bootstrap, client_id="rapport-intake")
    await broker.start()
    try:
        marker = f"env-{uuid.uuid4()}".encode()
        await broker.publish(marker, INTAKE)
        with pytest.raises(TopicAuthorizationFailedError):
            await broker.publish(b"forged", COURSE)
    finally:
        await broker.stop()
    await _read_assigned(secure_kafka, "partner-demo", INTAKE, marker)


# ------------------------------------------------------------------------------ TLS (SASL_SSL)


async def test_partner_reads_over_tls_trusting_the_brokers_ca(secure_kafka: KafkaHandle) -> None:
    """The TLS listener: the same principals and ACLs, the connection encrypted and the broker
    verified against its CA (host name included)."""
    marker = f"tls-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "scheduler", COURSE, marker)
    tls = {"bootstrap_servers": secure_kafka.tls_bootstrap,
           **secure_kafka.security("partner-demo", tls=True).aiokafka_kwargs()}
    assert tls["security_protocol"] == "SASL_SSL"
    consumer = AIOKafkaConsumer(COURSE, group_id="partner-demo-tls", enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=10_000, **tls)
    try:
        await asyncio.wait_for(consumer.start(), 30)
        deadline = asyncio.get_running_loop().time() + 30
        seen: list[bytes] = []
        while marker not in seen:
            assert asyncio.get_running_loop().time() < deadline, "the marker was not read over TLS"
            batch = await consumer.getmany(timeout_ms=1000)
            seen += [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    # The ACLs hold on this listener too: the private topic stays closed to the partner.
    private = AIOKafkaConsumer(PRIVATE_CONTACTS, enable_auto_commit=False, request_timeout_ms=10_000, **tls)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(private.start(), 30)
            await asyncio.wait_for(private.getmany(timeout_ms=2000), 20)
    finally:
        await private.stop()


async def test_tls_refuses_an_untrusted_broker_and_a_plaintext_client(secure_kafka: KafkaHandle) -> None:
    from rapport_shared.settings import KafkaSecurity

    untrusted = KafkaSecurity(security_protocol="SASL_SSL", sasl_username="partner-demo",
                              sasl_password=secure_kafka.users["partner-demo"])  # the system CAs only
    for kwargs in (untrusted.aiokafka_kwargs(), secure_kafka.security("partner-demo").aiokafka_kwargs()):
        producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.tls_bootstrap, request_timeout_ms=5_000, **kwargs)
        try:
            with pytest.raises(KafkaConnectionError):
                await asyncio.wait_for(producer.start(), 30)
        finally:
            await producer.stop()


async def test_a_service_connects_over_tls_from_its_environment(secure_kafka: KafkaHandle,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """RAPPORT_KAFKA_SECURITY_PROTOCOL=SASL_SSL + RAPPORT_KAFKA_SSL_CAFILE: the FastStream broker a
    service runs (make_broker) and its plain aiokafka clients (ensure_topics) go over TLS."""
    from rapport_shared.kafka import ensure_topics, make_broker

    monkeypatch.setenv("RAPPORT_KAFKA_SASL_USERNAME", "intake")
    monkeypatch.setenv("RAPPORT_KAFKA_SASL_PASSWORD", secure_kafka.users["intake"])
    monkeypatch.setenv("RAPPORT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RAPPORT_KAFKA_SSL_CAFILE", secure_kafka.tls_cafile)
    await ensure_topics(secure_kafka.tls_bootstrap, [INTAKE], 3, 1)  # exists: only listed
    broker = make_broker(secure_kafka.tls_bootstrap, client_id="rapport-intake")
    await broker.start()
    try:
        marker = f"tls-env-{uuid.uuid4()}".encode()
        await broker.publish(marker, INTAKE)
    finally:
        await broker.stop()
    await _read_assigned(secure_kafka, "partner-demo", INTAKE, marker)


async def test_the_partner_example_reads_over_tls(secure_kafka: KafkaHandle, tmp_path) -> None:
    """examples/partner_consumer (plain aiokafka) with --sasl-username/--cafile on the TLS port."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "examples" / "partner_consumer" / "consumer.py"
    marker = f"tls-example-{uuid.uuid4()}".encode()
    await _produce(secure_kafka, "scheduler", COURSE, marker)
    base = [sys.executable, str(example), "--bootstrap", secure_kafka.tls_bootstrap, "--topics", COURSE,
            "--until-caught-up", "--sasl-username", "partner-demo", "--sasl-password", secure_kafka.users["partner-demo"],
            "--report", str(tmp_path / "r.jsonl")]
    proc = await asyncio.to_thread(subprocess.run, [*base, "--cafile", secure_kafka.tls_cafile],
                                   capture_output=True, text=True, timeout=120)
    summary = json.loads(proc.stdout)
    assert summary["records"] >= 1, proc.stderr  # read over TLS (the test markers are not CloudEvents: invalid)
    offsets = [json.loads(line)["offset"] for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(offsets) == summary["records"]
    untrusted = await asyncio.to_thread(subprocess.run, [*base, "--tls"], capture_output=True, text=True, timeout=120)
    assert untrusted.returncode != 0 and not untrusted.stdout.strip().startswith("{")


def test_cli_over_tls(secure_kafka: KafkaHandle) -> None:
    """`rapport` (the partners' and operators' tool) takes --security-protocol SASL_SSL --ssl-cafile."""
    from typer.testing import CliRunner

    from rapport_tools.cli import app

    args = ["-b", secure_kafka.tls_bootstrap, "--sasl-username", "partner-demo", "--sasl-password",
            secure_kafka.users["partner-demo"], "--security-protocol", "SASL_SSL"]
    ok = CliRunner().invoke(app, [*args, "--ssl-cafile", secure_kafka.tls_cafile, "topics"])
    assert ok.exit_code == 0 and COURSE in ok.output and PRIVATE_CONTACTS not in ok.output, ok.output
    refused = CliRunner().invoke(app, [*args, "topics"])  # without the CA: the broker is not trusted
    assert refused.exit_code != 0


def test_apply_is_idempotent_and_prune_removes_stale_acls(secure_kafka: KafkaHandle) -> None:
    admin = secure_kafka.security("admin")
    again = acl.apply_acls(secure_kafka.bootstrap, admin, partners=["demo"])
    assert again.created == [] and again.topics_created == [] and again.extra == []
    assert len(again.unchanged) == len(acl.desired_acls(["demo"]))
    # a second partner, then revoked by pruning with the original set
    with_acme = acl.apply_acls(secure_kafka.bootstrap, admin, partners=["demo", "acme"], create_topics=False)
    assert {a.principal for a in with_acme.created} == {"User:partner-acme"}
    pruned = acl.apply_acls(secure_kafka.bootstrap, admin, partners=["demo"], prune=True, create_topics=False)
    assert {a.principal for a in pruned.deleted} == {"User:partner-acme"} and not pruned.created


def test_acl_set_shape() -> None:
    acls = acl.desired_acls(["demo"])
    by = lambda p, op: {(a.resource_name, a.pattern_type) for a in acls if a.principal == p and a.operation == op}  # noqa: E731
    assert by("User:partner-demo", "WRITE") == set()
    assert {n for n, _ in by("User:partner-demo", "READ")} == {INTAKE, COURSE, OUTCOMES, NOTIFICATIONS, "partner-demo"}
    private_readers = {a.principal for a in acls if a.operation == "READ" and a.resource_name.startswith("rapport.private")}
    assert private_readers == {"User:notifier"}
    private_writers = {a.principal for a in acls if a.operation == "WRITE" and a.resource_name.startswith("rapport.private")}
    assert private_writers == {"User:intake"}
    writers = {a.resource_name: a.principal for a in acls if a.operation == "WRITE" and ".dlq." not in a.resource_name}
    assert writers == {INTAKE: "User:intake", PRIVATE_CONTACTS: "User:intake", PRIVATE_PERSON_KEYS: "User:intake",
                       ERASURES: "User:intake", COURSE: "User:scheduler", OUTCOMES: "User:outcomes",
                       NOTIFICATIONS: "User:notifier"}
    # erasure notices: read by outcomes only (never a partner)
    assert {a.principal for a in acls if a.operation == "READ" and a.resource_name == ERASURES} == {"User:outcomes"}
    with pytest.raises(ValueError):
        acl.desired_acls(["acme", "acme2"])  # prefixed group ACLs would overlap


def test_cli_acls_show_and_apply(secure_kafka: KafkaHandle) -> None:
    """`rapport acls show --json` prints the set; `rapport acls apply` as admin finds nothing to do."""
    import json

    from typer.testing import CliRunner

    from rapport_tools.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["acls", "show", "--json", "-p", "demo"])
    assert shown.exit_code == 0, shown.output
    assert len(json.loads(shown.stdout)) == len(acl.desired_acls(["demo"]))
    applied = runner.invoke(app, ["-b", secure_kafka.bootstrap, "--sasl-username", "admin", "--sasl-password",
                                  secure_kafka.users["admin"], "--sasl-mechanism", "PLAIN", "acls", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "0 ACL(s) created" in applied.output
    # a partner cannot apply ACLs
    refused = runner.invoke(app, ["-b", secure_kafka.bootstrap, "--sasl-username", "partner-demo", "--sasl-password",
                                  secure_kafka.users["partner-demo"], "--sasl-mechanism", "PLAIN", "acls", "apply",
                                  "--no-topics"])
    assert refused.exit_code == 2, refused.output


def test_cli_acls_apply_prune_is_a_dry_run_without_apply(secure_kafka: KafkaHandle) -> None:
    """`rapport acls apply --prune` lists the ACLs outside the set and deletes nothing; with --apply it
    deletes them (issue 14: --dry-run is the default of destructive commands)."""
    import json

    from typer.testing import CliRunner

    from rapport_tools.cli import app

    admin = secure_kafka.security("admin")
    acl.apply_acls(secure_kafka.bootstrap, admin, partners=["demo", "gone"], create_topics=False)
    as_admin = ["-b", secure_kafka.bootstrap, "--sasl-username", "admin", "--sasl-password",
                secure_kafka.users["admin"], "--sasl-mechanism", "PLAIN", "acls", "apply", "--no-topics", "--prune"]
    runner = CliRunner()
    dry = runner.invoke(app, [*as_admin, "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert report["deleted"] == [] and {a["principal"] for a in report["would_delete"]} == {"User:partner-gone"}
    still = acl.current_acls(acl.admin_client(secure_kafka.bootstrap, admin))
    assert any(a.principal == "User:partner-gone" for a in still), "a dry run deleted ACLs"
    done = runner.invoke(app, [*as_admin, "--apply", "--json"])
    assert done.exit_code == 0, done.output
    assert {a["principal"] for a in json.loads(done.stdout)["deleted"]} == {"User:partner-gone"}
    assert not any(a.principal == "User:partner-gone" for a in acl.current_acls(acl.admin_client(secure_kafka.bootstrap,
                                                                                                  admin)))
