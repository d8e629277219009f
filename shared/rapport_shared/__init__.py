"""Rapport's common package: one implementation of every mechanism the four services share.

Where to look:
- ``envelope``   CloudEvents 1.0 binary-mode encode/decode on Kafka records
- ``contracts``  the partner-facing event models (pydantic) and their committed JSON Schemas
- ``outbox``     transactional outbox writer and the relay that publishes it
- ``inbox``      processed-event ids, recorded in the same transaction as the effect
- ``consumer``   the subscription wrapper: decode, dedupe, retry, dead-letter, commit after effect
- ``db``         asyncpg pools, per-service roles/schemas, SQL migrations
- ``http``       FastAPI app factory, JWT auth with roles, health and metrics
- ``runtime``    wires Postgres, Kafka, relay, consumers and HTTP under one lifespan
"""

__version__ = "0.1.0"
