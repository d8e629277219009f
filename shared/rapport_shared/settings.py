"""Service configuration from environment variables (prefix ``RAPPORT_``).

Every service reads the same settings class so operators configure all four the same way;
a service-specific subclass may add fields.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurity(BaseSettings):
    """How a Kafka client authenticates (the secure profile, docs/partners.md "Access").

    From ``RAPPORT_KAFKA_SECURITY_PROTOCOL``, ``RAPPORT_KAFKA_SASL_MECHANISM``,
    ``RAPPORT_KAFKA_SASL_USERNAME``, ``RAPPORT_KAFKA_SASL_PASSWORD`` and, for ``SASL_SSL``,
    ``RAPPORT_KAFKA_SSL_CAFILE`` (the CA that signed the broker's certificate; unset: the
    system's trusted CAs). With no username (the
    default) it is PLAINTEXT without SASL and every ``*_kwargs()`` is empty, so clients are built
    exactly as before. With a username the protocol defaults to SASL_PLAINTEXT and the mechanism
    to PLAIN (what ``deploy/kafka`` enables with ``KAFKA_SECURE=1``).
    """

    model_config = SettingsConfigDict(env_prefix="RAPPORT_KAFKA_", extra="ignore")

    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: str = ""

    @model_validator(mode="after")
    def _check(self) -> "KafkaSecurity":
        self.security_protocol = self.security_protocol.strip().upper()
        self.sasl_mechanism = self.sasl_mechanism.strip().upper()
        if self.security_protocol and self.security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(f"kafka security protocol must be one of {KAFKA_SECURITY_PROTOCOLS}")
        if self.sasl_mechanism and self.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
            raise ValueError(f"kafka SASL mechanism must be one of {KAFKA_SASL_MECHANISMS}")
        if self.protocol.startswith("SASL_") and not self.sasl_username:
            raise ValueError(f"{self.protocol} needs RAPPORT_KAFKA_SASL_USERNAME")
        if self.ssl_cafile and self.protocol != "SASL_SSL":
            raise ValueError("RAPPORT_KAFKA_SSL_CAFILE is for SASL_SSL; the protocol is " + self.protocol)
        return self

    def ssl_context(self) -> Any:
        """The TLS context of a SASL_SSL client: verifies the broker against ``ssl_cafile`` (or the
        system's CAs) and its host name."""
        import ssl  # noqa: PLC0415

        return ssl.create_default_context(cafile=self.ssl_cafile or None)

    @property
    def enabled(self) -> bool:
        """Whether anything differs from plain, unauthenticated PLAINTEXT."""
        return self.protocol != "PLAINTEXT"

    @property
    def protocol(self) -> str:
        return self.security_protocol or ("SASL_PLAINTEXT" if self.sasl_username else "PLAINTEXT")

    @property
    def mechanism(self) -> str:
        return self.sasl_mechanism or "PLAIN"

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient ({} by default)."""
        if not self.enabled:
            return {}
        kw: dict[str, Any] = {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password.get_secret_value(),
        }
        if self.protocol == "SASL_SSL":
            kw["ssl_context"] = self.ssl_context()
        return kw

    def faststream_security(self) -> Any:
        """A ``faststream.security`` object for ``KafkaBroker(security=...)``; None by default."""
        if not self.enabled:
            return None
        from faststream.security import SASLPlaintext, SASLScram256, SASLScram512  # noqa: PLC0415

        cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[self.mechanism]
        if self.protocol == "SASL_SSL":
            return cls(self.sasl_username, self.sasl_password.get_secret_value(), ssl_context=self.ssl_context(),
                       use_ssl=True)
        return cls(self.sasl_username, self.sasl_password.get_secret_value(), use_ssl=False)

    def confluent_config(self) -> dict[str, str]:
        """librdkafka settings for confluent-kafka clients ({} by default)."""
        if not self.enabled:
            return {}
        return {
            "security.protocol": self.protocol,
            "sasl.mechanism": self.mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value(),
            **({"ssl.ca.location": self.ssl_cafile} if self.ssl_cafile else {}),
        }


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore")

    service_name: str = Field(description="intake | scheduler | outcomes | notifier")
    environment: Literal["development", "test", "production"] = "development"
    version: str = "0.1.0"

    # Postgres: each service connects as its own role and works in its own schema.
    database_dsn: str = "postgresql://postgres:postgres@localhost:5432/rapport"
    db_schema: str = ""
    db_pool_min: int = 1
    db_pool_max: int = 10
    migrate_on_start: bool = False

    # Kafka
    kafka_bootstrap: str = "localhost:9092"
    consumer_group: str = ""
    # A new consumer group must see history (replay, first deploy), so start from the beginning.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    topic_partitions: int = 3
    topic_replication: int = 1
    # Secure profile (SASL); empty = PLAINTEXT, no authentication. See KafkaSecurity.
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str = ""

    # Outbox relay
    relay_enabled: bool = True
    # Rows per relay pass (and at most 16 MiB of values): marking a batch sent is one UPDATE and
    # one COMMIT, so larger batches spread those over more rows.
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_poll_interval_s: float = 1.0
    outbox_retention_hours: int = 72
    # Size limit of one event on Kafka (value + key + headers as the producer counts them): below the
    # broker's default message.max.bytes (1 MB). ``Outbox.add`` refuses a larger event (HTTP 422),
    # and the relay parks an outbox row above it instead of sending it (docs/architecture.md).
    max_event_bytes: int = Field(default=900 * 1024, ge=1024)
    # A row whose publish fails this many passes in a row with an error that is neither the broker
    # being away nor retriable is parked (``rapport outbox parked``); later rows of its key wait.
    relay_max_attempts: int = Field(default=5, ge=1)
    # The relay's producer: what it is handed while it sends travels in one request per partition
    # anyway; linger_ms also waits that long for more (measured: no faster drain here, 5 ms more
    # latency per hop at 5). Compression per batch: none | gzip (| snappy | lz4 | zstd with the
    # cramjam package installed).
    relay_linger_ms: int = Field(default=0, ge=0)
    relay_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"

    # Batch consumption (rapport_shared.kafka.BatchSubscriber): each pass takes what the broker
    # has, up to this many records and bytes; the partitions of a batch are applied side by side,
    # at most consumer_concurrency at once (each holds a pooled connection for its transaction).
    consumer_batch_max_records: int = Field(default=500, ge=1)
    consumer_batch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    consumer_concurrency: int = Field(default=4, ge=1)
    # The safety lane (ServiceRuntime(priority=...)): its consumer group is <consumer_group>-priority
    # and it has a connection pool of its own, of this size, so it never waits behind the main one.
    priority_pool_max: int = Field(default=2, ge=1)

    # Consumer retry policy: a handler error is retried with backoff, then dead-lettered.
    handler_max_attempts: int = 5
    handler_backoff_s: float = 0.2
    handler_backoff_max_s: float = 10.0

    # Durable timers (rapport_shared.timers): a handler error is retried with jittered backoff
    # (from timer_backoff_s, capped at timer_backoff_max_s) up to timer_max_attempts times in all,
    # then the timer is parked (`rapport timers parked`); an outage is retried until it is over.
    timer_max_attempts: int = Field(default=8, ge=1)
    timer_backoff_s: float = Field(default=0.5, ge=0)
    timer_backoff_max_s: float = Field(default=60.0, ge=0)

    # Time (architecture.md "Time"): "system" (wall clock) or "simulated" (follow the clock topic, so
    # "now" means the same in every service of a simulation: tests and the demo).
    clock: Literal["system", "simulated"] = "system"
    clock_topic: str = "rapport.clock"

    # Set by `rapport-<svc> replay run` (shared/rapport_tools/replay.py): the process rebuilds a
    # shadow projection; external side effects are suppressed (the notifier sends nothing).
    replay_mode: bool = False

    # HTTP
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # Request bodies above this are refused with 413 before any handler runs (http/limits.py).
    http_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Bearer tokens (docs/access.md): the issuer's public keys, a JWKS file path or https URL.
    # Services verify tokens and cannot mint them. The HMAC secret is for development and the
    # in-process tests only: used when no JWKS is set; production refuses it.
    auth_jwks: str = ""
    auth_secret: SecretStr = SecretStr("dev-only-secret-change-me-0123456789")
    auth_issuer: str = "rapport"
    auth_audience: str = "rapport"
    auth_max_token_lifetime_s: int = Field(default=12 * 3600, ge=60,
                                           description="a token valid for longer (exp - iat) is refused")
    # Events from producers that do not yet carry organisation_id (optional-then-required, v1):
    # the organisation they are taken to belong to. Empty: such records belong to none.
    default_organisation: str = ""

    # Logging
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            security_protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username, sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
        )

    @model_validator(mode="after")
    def _defaults(self) -> "ServiceSettings":
        if not self.db_schema:
            self.db_schema = self.service_name
        if not self.consumer_group:
            self.consumer_group = f"rapport-{self.service_name}"
        if self.environment == "production":
            if "auth_secret" in self.model_fields_set:
                raise ValueError("production refuses RAPPORT_AUTH_SECRET (a shared HMAC secret lets every service mint "
                                 "tokens): unset it and set RAPPORT_AUTH_JWKS to the issuer's public keys")
            if not self.auth_jwks:
                raise ValueError("production needs RAPPORT_AUTH_JWKS (a JWKS file or https URL of the token issuer)")
            if self.auth_jwks.startswith("http://"):
                raise ValueError("RAPPORT_AUTH_JWKS must be an https URL or a file in production")
            for refusal in self.production_refusals():
                raise ValueError(refusal)
        return self

    def production_refusals(self) -> list[str]:
        """What production refuses beyond tokens, one clear sentence each (README "Security").
        Service settings extend this list (the notifier: HTTP webhooks, the development contacts key)."""
        out: list[str] = []
        if os.environ.get("RAPPORT_CRASH_AT"):
            out.append("production refuses RAPPORT_CRASH_AT: crash points kill the process on purpose (tests only)")
        if self.clock == "simulated":
            out.append("production refuses RAPPORT_CLOCK=simulated: time would follow the clock topic, not the wall clock")
        if self.kafka_security().protocol != "SASL_SSL":
            out.append(f"production refuses Kafka over {self.kafka_security().protocol}: set "
                       "RAPPORT_KAFKA_SECURITY_PROTOCOL=SASL_SSL with a SASL username and password (authenticated "
                       "and encrypted)")
        sslmode = dict(parse_qsl(urlsplit(self.database_dsn).query)).get("sslmode", "")
        if sslmode not in ("verify-ca", "verify-full"):
            out.append(f"production refuses a Postgres connection without verified TLS (sslmode={sslmode or 'unset'}): "
                       "add ?sslmode=verify-full (or verify-ca) and sslrootcert=<CA file> to RAPPORT_DATABASE_DSN")
        return out
