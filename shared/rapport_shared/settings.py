"""Service configuration from environment variables (prefix ``RAPPORT_``).

Every service reads the same settings class so operators configure all four the same way;
a service-specific subclass may add fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # Outbox relay
    relay_enabled: bool = True
    relay_batch_size: int = 200
    relay_poll_interval_s: float = 1.0
    outbox_retention_hours: int = 72

    # Consumer retry policy: a handler error is retried with backoff, then dead-lettered.
    handler_max_attempts: int = 5
    handler_backoff_s: float = 0.2
    handler_backoff_max_s: float = 10.0

    # HTTP
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    auth_secret: SecretStr = SecretStr("dev-only-secret-change-me-0123456789")
    auth_issuer: str = "rapport"
    auth_audience: str = "rapport"

    # Logging
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _defaults(self) -> "ServiceSettings":
        if not self.db_schema:
            self.db_schema = self.service_name
        if not self.consumer_group:
            self.consumer_group = f"rapport-{self.service_name}"
        if self.environment == "production" and self.auth_secret.get_secret_value().startswith("dev-only"):
            raise ValueError("RAPPORT_AUTH_SECRET must be set in production")
        return self
