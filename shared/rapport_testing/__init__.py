"""Rapport's test support (the ``rapport-testing`` package: a development dependency of the
workspace, never installed in an image). Imported by tests, benchmarks and the demo only.

- ``fixtures``  the pytest plugin (tests/conftest.py): Postgres and Kafka, roles and schemas, tokens,
                the services as processes
- ``infra``     Postgres and Kafka in containers (or already running), with a tiny Kafka protocol probe
- ``services``  the installed services as OS processes
- ``flows``, ``kafka``, ``db``, ``wait``  episode steps over HTTP, a partner's view of the topics,
                SQL one-liners, polling
- ``fake_uow``  ``FakeUnitOfWork``: service-layer tests without Postgres
- ``fuzz``      hostile records for the consumers (docs/robustness.md)
- ``notifier``, ``scheduler``  service-specific helpers (loopback mail/SMS/webhook servers; booking rules)
"""
