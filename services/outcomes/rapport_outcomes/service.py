"""Outcomes, as the tools and the test support find it (entry point ``rapport.services``,
``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import CLOCK, COURSE, ERASURES, INTAKE, NOTIFICATIONS, OUTCOMES

SERVICE = ServiceSpec(
    name="outcomes",
    package=__package__,
    order=3,
    # outcomes reads the erasure notices (pseudonymous id + organisation only) to erase its free
    # text; never a rapport.private.* topic. rapport.notifications: the deliveries (kind, channel,
    # recipient role; no contact data) for the FHIR record's Communications.
    kafka=KafkaAccess(writes=(OUTCOMES,), reads=(INTAKE, COURSE, NOTIFICATIONS, CLOCK, ERASURES),
                      reads_without_dlq=(CLOCK, ERASURES)),
)
