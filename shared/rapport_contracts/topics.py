"""Topic names (architecture.md, "Event catalogue v1")."""

INTAKE = "rapport.intake"
COURSE = "rapport.course"
OUTCOMES = "rapport.outcomes"
NOTIFICATIONS = "rapport.notifications"
PRIVATE_CONTACTS = "rapport.private.contacts"  # compacted, access-restricted; never partner-visible
# Per-person data keys (wrapped by the contacts master key) for the contacts topic: compacted,
# intake writes, the notifier reads; a tombstone = the person's key destroyed (crypto-shredding).
PRIVATE_PERSON_KEYS = "rapport.private.person-keys"
# Erasure notices (pseudonymous person id + organisation code, nothing else): intake writes,
# outcomes reads (it erases the free text it holds); not shared with partners.
ERASURES = "rapport.erasures"
# Simulated time (clock.py): one partition, read by assign + seek; only in simulation mode.
CLOCK = "rapport.clock"
# The notifier reads every rapport.private.* topic (contacts and person keys).
PRIVATE_PREFIX = "rapport.private."

SHARED_TOPICS = (INTAKE, COURSE, OUTCOMES, NOTIFICATIONS)


def dlq_topic(topic: str, consumer_group: str) -> str:
    return f"{topic}.dlq.{consumer_group}"
