"""Topic names (architecture.md, "Event catalogue v1")."""

INTAKE = "rapport.intake"
COURSE = "rapport.course"
OUTCOMES = "rapport.outcomes"
NOTIFICATIONS = "rapport.notifications"
PRIVATE_CONTACTS = "rapport.private.contacts"  # compacted, access-restricted; never partner-visible

SHARED_TOPICS = (INTAKE, COURSE, OUTCOMES, NOTIFICATIONS)


def dlq_topic(topic: str, consumer_group: str) -> str:
    return f"{topic}.dlq.{consumer_group}"
