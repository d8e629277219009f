"""The clinician console, as the tools and the test support find it (entry point
``rapport.services``, ``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import CLOCK, SHARED_TOPICS

SERVICE = ServiceSpec(
    name="console",
    package=__package__,
    order=5,
    # reads the shared topics into its read model (docs/console.md), publishes nothing
    kafka=KafkaAccess(writes=(), reads=(*SHARED_TOPICS, CLOCK), reads_without_dlq=(CLOCK,)),
)
