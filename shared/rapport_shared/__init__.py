"""Rapport's runtime core: what the services import at run time, one implementation of every
mechanism they share, and no knowledge of any service (they describe themselves: ``service``).

Where to look:
- ``envelope``     CloudEvents 1.0 binary-mode encode/decode on Kafka records
- ``contracts``    the partner-facing event models (pydantic) and their registry
- ``outbox``       transactional outbox writer and the relay that publishes it
- ``inbox``        processed-event ids, recorded in the same transaction as the effect
- ``consumer``     the subscription wrapper: decode, dedupe, retry, dead-letter, commit after effect
- ``messagebus``   the one handler form: ``HandlerRegistry`` (``@handles(Model)``) and ``MessageBus``
- ``uow``          the unit of work handlers get (connection, outbox, clock, settings)
- ``errors``       domain errors (no HTTP); ``http.errors`` maps them to responses, once
- ``db``           asyncpg pools, per-service roles/schemas, SQL migrations
- ``http``         FastAPI app factory, JWT auth with roles, the access policy, health and metrics
- ``runtime``      wires Postgres, Kafka, relay, consumers and HTTP under one lifespan
- ``timers``, ``clock``, ``listen``, ``retry``  durable timers, injectable time, the NOTIFY loop,
                   the retry policy
- ``projection``   what a replay rebuilds (the replay itself is a tool)
- ``service``      how a service describes itself for the tools (entry points ``rapport.services``)

Tools (CLIs, replay, ACLs, doc generation, schema export, compatibility check) are in
``rapport_tools``; test support in ``rapport_testing``. This package imports neither
(tests/unit/shared/test_boundaries.py).
"""

__version__ = "0.1.0"
