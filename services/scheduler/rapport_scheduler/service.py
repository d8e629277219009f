"""The scheduler, as the tools and the test support find it (entry point ``rapport.services``,
``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import CLOCK, COURSE, INTAKE, OUTCOMES

SERVICE = ServiceSpec(
    name="scheduler",
    package=__package__,
    order=2,
    kafka=KafkaAccess(writes=(COURSE,), reads=(INTAKE, OUTCOMES, CLOCK), reads_without_dlq=(CLOCK,)),
)
