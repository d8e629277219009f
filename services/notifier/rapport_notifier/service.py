"""The notifier, as the tools and the test support find it (entry point ``rapport.services``,
``rapport_shared.service``): its Kafka access; its code is in the common layout."""

from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_shared.topics import CLOCK, NOTIFICATIONS, PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS, PRIVATE_PREFIX, SHARED_TOPICS

SERVICE = ServiceSpec(
    name="notifier",
    package=__package__,
    order=4,
    kafka=KafkaAccess(
        writes=(NOTIFICATIONS,),
        reads=(*SHARED_TOPICS, CLOCK),
        reads_without_dlq=(CLOCK,),
        read_prefixes=(PRIVATE_PREFIX,),  # rapport.private.contacts and rapport.private.person-keys
        # its contacts reader calls ensure_private_topic, which reads the topics' config
        extra=((PRIVATE_CONTACTS, "DESCRIBE_CONFIGS"), (PRIVATE_PERSON_KEYS, "DESCRIBE_CONFIGS")),
    ),
)
