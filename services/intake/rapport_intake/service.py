"""Intake, as the tools and the test support find it (entry point ``rapport.services``,
``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import ERASURES, INTAKE, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

SERVICE = ServiceSpec(
    name="intake",
    package=__package__,
    order=1,
    kafka=KafkaAccess(
        # the private contacts path, the per-person data keys (crypto-shredding) and the erasure
        # notices (docs/privacy.md)
        writes=(INTAKE, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS, ERASURES),
        # intake owns these topics: ensure_private_topic describes and fixes their config.
        extra=tuple((t, op) for t in (PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS, ERASURES)
                    for op in ("ALTER_CONFIGS", "DESCRIBE_CONFIGS")),
    ),
)
