"""Outcomes, as the tools and the test support find it (entry point ``rapport.services``,
``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import CLOCK, COURSE, ERASURES, INTAKE, OUTCOMES

SERVICE = ServiceSpec(
    name="outcomes",
    package=__package__,
    order=3,
    # outcomes reads the erasure notices (pseudonymous id + organisation only) to erase its free
    # text; never a rapport.private.* topic.
    kafka=KafkaAccess(writes=(OUTCOMES,), reads=(INTAKE, COURSE, CLOCK, ERASURES), reads_without_dlq=(CLOCK, ERASURES)),
)
