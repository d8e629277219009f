"""Kafka principals and ACLs of the secure profile (docs/partners.md, "Access").

The ACL set is data (each service's declared :class:`~rapport_shared.service.KafkaAccess`,
:func:`desired_acls`); :func:`apply_acls` makes a cluster
match it with ``confluent_kafka``'s AdminClient (aiokafka has no ACL API), connecting as a super
user (``admin`` in the compose secure profile). Creating an ACL that exists is a no-op, so applying
is idempotent; ``prune=True`` also deletes ACLs that are not in the set (e.g. a removed partner),
unless ``prune_dry_run=True``, which only lists them (the command lines prune only with ``--apply``).

Principals are ``User:<name>``, authenticated with SASL/PLAIN (``deploy/kafka/kafka-run.sh``,
``KAFKA_SECURE=1``). With ``allow.everyone.if.no.acl.found=false`` anything not granted here is
refused — except for the super users (``User:broker``, ``User:admin``).

    python -m rapport_tools.acl show  [--partner demo ...] [--json]
    python -m rapport_tools.acl apply [--bootstrap HOST:PORT] [--partner demo ...] [--prune [--apply]]
                                       [--no-topics] [--wait SECONDS]
    rapport acls show|apply ...     (the same from the ``rapport`` CLI)

Credentials: ``RAPPORT_KAFKA_SASL_USERNAME`` / ``_PASSWORD`` / ``_MECHANISM`` (PLAIN) /
``RAPPORT_KAFKA_SECURITY_PROTOCOL`` (SASL_PLAINTEXT), see :class:`settings.KafkaSecurity`.

Notes on Kafka 4.3's authorizer, checked by tests/integration/security/test_kafka_acls.py:

* READ and WRITE imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
* The idempotent producer (``enable_idempotence=True``, what every service uses) needs
  ``IDEMPOTENT_WRITE`` on the cluster: aiokafka's ``InitProducerId`` is refused with
  CLUSTER_AUTHORIZATION_FAILED with WRITE on the topic alone (KIP-679's "WRITE on any topic is
  enough" did not hold here), so every service gets it. It allows nothing but producer ids.
* Consumers without a group (the simulated clock's assign + seek) need only READ on the topic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from rapport_shared.retry import RetryPolicy
from rapport_shared.service import KafkaAccess
from rapport_shared.settings import KafkaSecurity
from rapport_shared.topics import CLOCK as CLOCK_TOPIC
from rapport_shared.topics import ERASURES, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS, SHARED_TOPICS, dlq_topic

from . import services as registry

DEFAULT_PARTNERS = ("demo",)

# Kafka names (confluent_kafka's enums use the same words; ResourceType.BROKER is the cluster).
TOPIC, GROUP, CLUSTER = "TOPIC", "GROUP", "CLUSTER"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"
CLUSTER_NAME = "kafka-cluster"

# Waits through the shared backoff (jittered): a broker still applying an ACL change, a cluster
# still starting.
VISIBLE_POLL = RetryPolicy(initial_s=0.2, max_s=1.0)
CLUSTER_RETRY = RetryPolicy(initial_s=0.5, max_s=2.0)


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule, from any host."""

    principal: str  # "User:scheduler"
    resource_type: str  # TOPIC | GROUP | CLUSTER
    resource_name: str
    pattern_type: str  # LITERAL | PREFIXED
    operation: str  # READ | WRITE | CREATE | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS | ...

    def __str__(self) -> str:
        star = "*" if self.pattern_type == PREFIXED else ""
        return f"{self.principal} {self.operation} {self.resource_type.lower()} {self.resource_name}{star}"


def service_access() -> dict[str, KafkaAccess]:
    """Each installed service's Kafka access, as it declares it (its ``service.py``)."""
    return {name: spec.kafka for name, spec in registry.registered().items()}


def service_group(service: str) -> str:
    return f"rapport-{service}"


def partner_principal(partner: str) -> str:
    return f"User:partner-{partner}"


def partner_group_prefix(partner: str) -> str:
    return f"partner-{partner}"


def service_dlq_topics(service: str, access: KafkaAccess | None = None) -> list[str]:
    access = access or registry.get(service).kafka
    return [dlq_topic(t, service_group(service)) for t in access.reads if t not in access.reads_without_dlq]


def service_acls(service: str, access: KafkaAccess | None = None) -> list[Acl]:
    access = access or registry.get(service).kafka
    p = f"User:{service}"
    out: list[Acl] = []
    for topic in (*access.writes, *service_dlq_topics(service, access)):
        # CREATE: the service's ensure_topics creates what it writes if it is missing.
        out += [Acl(p, TOPIC, topic, LITERAL, "WRITE"), Acl(p, TOPIC, topic, LITERAL, "CREATE")]
    out += [Acl(p, TOPIC, topic, LITERAL, "READ") for topic in access.reads]
    out += [Acl(p, TOPIC, prefix, PREFIXED, "READ") for prefix in access.read_prefixes]
    out += [Acl(p, TOPIC, topic, LITERAL, op) for topic, op in access.extra]
    out.append(Acl(p, GROUP, service_group(service), PREFIXED, "READ"))
    if access.writes:  # idempotent producer (see the module docstring)
        out.append(Acl(p, CLUSTER, CLUSTER_NAME, LITERAL, "IDEMPOTENT_WRITE"))
    return out


def partner_acls(partner: str) -> list[Acl]:
    """A partner reads the four shared topics and uses consumer groups ``partner-<name>*``; nothing else."""
    p = partner_principal(partner)
    out = [Acl(p, TOPIC, topic, LITERAL, "READ") for topic in SHARED_TOPICS]
    out.append(Acl(p, GROUP, partner_group_prefix(partner), PREFIXED, "READ"))
    return out


def _check_partners(partners: Sequence[str]) -> None:
    import re  # noqa: PLC0415

    for name in partners:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"partner name {name!r}: use lower-case letters, digits, '-' and '_'")
    for a in partners:
        for b in partners:
            # group ACLs are prefixed: partner-acme would also match partner-acme2's groups
            if a != b and b.startswith(a):
                raise ValueError(f"partner name {a!r} is a prefix of {b!r}; their group ACLs would overlap")


def desired_acls(partners: Sequence[str] = DEFAULT_PARTNERS,
                 services: dict[str, KafkaAccess] | None = None) -> list[Acl]:
    """The whole ACL set: every service of ``services`` (default: the installed ones) and every partner."""
    _check_partners(partners)
    acls: set[Acl] = set()
    for name, access in (services or service_access()).items():
        acls.update(service_acls(name, access))
    for partner in partners:
        acls.update(partner_acls(partner))
    return sorted(acls)


def desired_topics(partitions: int = 3, replication: int = 1) -> dict[str, tuple[int, int, dict[str, str]]]:
    """Topics the ACL set refers to by literal name, created up front by :func:`apply_acls` so that a
    principal with READ only never needs CREATE: name -> (partitions, replication, config)."""
    from rapport_shared.private_contacts import DEFAULT_TOPIC_CONFIG, ERASURES_TOPIC_CONFIG, KEYS_TOPIC_CONFIG  # noqa: PLC0415

    keep = {"retention.ms": "-1"}  # as kafka.ensure_topics: event topics are the system of record
    topics: dict[str, tuple[int, int, dict[str, str]]] = {t: (partitions, replication, keep) for t in SHARED_TOPICS}
    topics[PRIVATE_CONTACTS] = (partitions, replication, dict(DEFAULT_TOPIC_CONFIG))
    topics[PRIVATE_PERSON_KEYS] = (partitions, replication, dict(KEYS_TOPIC_CONFIG))
    topics[ERASURES] = (partitions, replication, dict(ERASURES_TOPIC_CONFIG))
    topics[CLOCK_TOPIC] = (1, replication, keep)  # as clock.py: one partition, total order
    for service, access in service_access().items():
        for dlq in service_dlq_topics(service, access):
            topics[dlq] = (partitions, replication, keep)
    return topics


# ------------------------------------------------------------------------------ confluent-kafka


def _binding(acl: Acl) -> Any:
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType  # noqa: PLC0415

    rtype = ResourceType.BROKER if acl.resource_type == CLUSTER else ResourceType[acl.resource_type]
    return AclBinding(rtype, acl.resource_name, ResourcePatternType[acl.pattern_type], acl.principal, "*",
                      AclOperation[acl.operation], AclPermissionType.ALLOW)


def _filter(acl: Acl) -> Any:
    """The exact filter matching ``acl`` (delete_acls takes filters, not bindings)."""
    from confluent_kafka.admin import AclBindingFilter  # noqa: PLC0415

    b = _binding(acl)
    return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                            b.permission_type)


def _from_binding(b: Any) -> Acl | None:
    """An existing binding as an :class:`Acl`; None for anything this module never creates (DENY,
    a specific host), which is therefore never pruned."""
    if b.permission_type.name != "ALLOW" or b.host != "*":
        return None
    rtype = CLUSTER if b.restype.name == "BROKER" else b.restype.name
    return Acl(b.principal, rtype, b.name, b.resource_pattern_type.name, b.operation.name)


def admin_client(bootstrap: str, security: KafkaSecurity | None = None, **config: Any) -> Any:
    """A confluent_kafka AdminClient; ``security`` None = from the environment."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    sec = security if security is not None else KafkaSecurity()
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "rapport-acl", **sec.confluent_config(), **config})


def _wait_all(futures: dict[Any, Any], timeout: float) -> None:
    errors = []
    for key, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - collected and raised together
            errors.append(f"{key}: {exc}")
    if errors:
        raise AclError("; ".join(errors))


class AclError(RuntimeError):
    """The cluster refused or did not answer."""


@dataclass
class ApplyReport:
    created: list[Acl] = field(default_factory=list)
    unchanged: list[Acl] = field(default_factory=list)
    deleted: list[Acl] = field(default_factory=list)
    extra: list[Acl] = field(default_factory=list)  # present, not desired, kept (prune=False)
    topics_created: list[str] = field(default_factory=list)
    would_delete: list[Acl] = field(default_factory=list)  # prune with prune_dry_run: listed, kept

    def summary(self) -> str:
        return (f"{len(self.created)} ACL(s) created, {len(self.unchanged)} already present, "
                f"{len(self.deleted)} deleted, {len(self.extra)} not in the set (kept); "
                f"{len(self.topics_created)} topic(s) created"
                + (f"; dry run: {len(self.would_delete)} ACL(s) not in the set would be deleted, add --apply"
                   if self.would_delete else ""))


def current_acls(admin: Any, timeout: float = 30.0) -> list[Acl]:
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType  # noqa: PLC0415

    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                           AclPermissionType.ANY)
    bindings = admin.describe_acls(flt, request_timeout=timeout).result(timeout=timeout)
    return sorted({a for a in map(_from_binding, bindings) if a is not None})


def ensure_topics(admin: Any, topics: dict[str, tuple[int, int, dict[str, str]]], timeout: float = 30.0) -> list[str]:
    from confluent_kafka.admin import NewTopic  # noqa: PLC0415

    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [NewTopic(name, num_partitions=p, replication_factor=r, config=cfg)
           for name, (p, r, cfg) in sorted(topics.items()) if name not in existing]
    if not new:
        return []
    futures = admin.create_topics(new, request_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise AclError(f"create topic {name}: {exc}") from exc
    return created


def apply_acls(bootstrap: str, security: KafkaSecurity | None = None, *, partners: Sequence[str] = DEFAULT_PARTNERS,
               acls: Iterable[Acl] | None = None, create_topics: bool = True, partitions: int = 3,
               replication: int = 1, prune: bool = False, prune_dry_run: bool = False, timeout: float = 30.0,
               client_config: dict[str, Any] | None = None) -> ApplyReport:
    """Make the cluster's ACLs include (``prune``: equal) the desired set, as a super user.

    ``security`` are the admin's credentials (None = ``RAPPORT_KAFKA_*`` from the environment).
    With ``create_topics`` the topics of :func:`desired_topics` are created first if missing.
    ``prune_dry_run``: list what ``prune`` would delete (``would_delete``), delete nothing.
    ``client_config``: extra AdminClient settings (the command line's logging and timeouts).
    """
    wanted = sorted(set(acls) if acls is not None else set(desired_acls(partners)))
    admin = admin_client(bootstrap, security, **(client_config or {}))
    report = ApplyReport()
    if create_topics:
        report.topics_created = ensure_topics(admin, desired_topics(partitions, replication), timeout)
    have = set(current_acls(admin, timeout))
    report.created = [a for a in wanted if a not in have]
    report.unchanged = [a for a in wanted if a in have]
    stale = sorted(have - set(wanted))
    if report.created:
        _wait_all(admin.create_acls([_binding(a) for a in report.created], request_timeout=timeout), timeout)
    if prune and stale and prune_dry_run:
        report.would_delete = stale
    elif prune and stale:
        _wait_all(admin.delete_acls([_filter(a) for a in stale], request_timeout=timeout), timeout)
        report.deleted = stale
    else:
        report.extra = stale
    if report.created or report.deleted:
        _wait_visible(admin, set(wanted), set(report.deleted), timeout)
    return report


def _wait_visible(admin: Any, present: set[Acl], absent: set[Acl], timeout: float) -> None:
    """CreateAcls/DeleteAcls return once the controller committed the change; a broker enforces it
    only after replaying the record (observed: the first requests right after were still refused).
    DescribeAcls is answered from the broker's authorizer, so wait until it shows the change."""
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        have = set(current_acls(admin, timeout))
        if present <= have and not (absent & have):
            return
        if time.monotonic() > deadline:
            raise AclError(f"ACL change not visible after {timeout:.0f}s: "
                           f"{len(present - have)} missing, {len(absent & have)} not yet deleted")
        tries += 1
        time.sleep(VISIBLE_POLL.delay(tries))


def wait_for_cluster(bootstrap: str, security: KafkaSecurity | None = None, timeout: float = 60.0) -> None:
    """Until the cluster answers a metadata request with these credentials (AclError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    admin = admin_client(bootstrap, security)
    tries = 0
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=5).brokers:
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        tries += 1
        time.sleep(CLUSTER_RETRY.delay(tries))
    raise AclError(f"no answer from {bootstrap} within {timeout:.0f}s: {last}")


# ------------------------------------------------------------------------------ command line


def table(acls: Iterable[Acl]) -> list[dict[str, str]]:
    return [asdict(a) for a in acls]


def main(argv: list[str] | None = None) -> int:
    import os  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m rapport_tools.acl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("show", "apply"):
        s = sub.add_parser(name)
        s.add_argument("--partner", action="append", default=None,
                       help=f"partner name (repeatable; default {', '.join(DEFAULT_PARTNERS)}; "
                            "env RAPPORT_KAFKA_PARTNERS, comma separated)")
        if name == "show":
            s.add_argument("--json", action="store_true")
        else:
            s.add_argument("--bootstrap", default=os.environ.get("RAPPORT_KAFKA_BOOTSTRAP", "localhost:9092"))
            s.add_argument("--prune", action="store_true",
                           help="delete ACLs that are not in the set (a dry run listing them unless --apply)")
            s.add_argument("--apply", action="store_true", help="with --prune: really delete")
            s.add_argument("--no-topics", action="store_true", help="do not create the topics first")
            s.add_argument("--partitions", type=int, default=3)
            s.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the broker")
    args = p.parse_args(argv)
    partners = args.partner or [x.strip() for x in os.environ.get("RAPPORT_KAFKA_PARTNERS", "").split(",") if x.strip()] \
        or list(DEFAULT_PARTNERS)
    if args.cmd == "show":
        acls = desired_acls(partners)
        if args.json:
            print(json.dumps(table(acls), indent=2))
        else:
            for a in acls:
                print(a)
        return 0
    security = KafkaSecurity()
    try:
        wait_for_cluster(args.bootstrap, security, args.wait)
        report = apply_acls(args.bootstrap, security, partners=partners, prune=args.prune, prune_dry_run=not args.apply,
                            create_topics=not args.no_topics, partitions=args.partitions)
    except (AclError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for t in report.topics_created:
        print(f"+ topic {t}")
    for a in report.created:
        print(f"+ {a}")
    for a in report.deleted:
        print(f"- {a}")
    for a in report.would_delete:
        print(f"- (dry run) {a} (not in the set; --prune --apply deletes it)")
    for a in report.extra:
        print(f"? {a} (not in the set; kept, use --prune to delete)")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
