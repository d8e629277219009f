"""Rapport's tools: what operators and developers run, never imported by a running service.

- ``cli``          ``rapport`` (``python -m rapport_tools``): topics, tail, dump/load, consumer
                   groups, dead letters, ACLs, parked outbox rows and timers on any Kafka/Postgres
- ``kafka_ops``    the Kafka operations behind it (tested directly)
- ``admin``        ``rapport-admin``: provision roles and schemas, development tokens and keys,
                   pseudonymous ids
- ``service_cli``  each service's ``rapport-<svc>``: migrate, run, openapi, replay
- ``replay``       rebuild a service's projection in a shadow schema (``replay_cli``: its commands)
- ``acl``          the Kafka principals and ACLs of the secure profile
- ``contracts``    JSON Schema export of the event models and the compatibility check
- ``docs``         the partner docs: AsyncAPI document and HTML catalogue
- ``services``     the installed services, found through the ``rapport.services`` entry points
"""
