"""What replay rebuilds in the notifier (shared/rapport_tools/replay.py, docs/replay.md).

The projection is the notifier's picture of the world as the topics describe it: who the patients
are and how to reach them (the private contacts topic), episodes, sessions and their times, and
the safety alerts raised and resolved. Not projection: the delivery log and its timers (what was
actually sent, and when, is a record of the world, and replay mode sends nothing), what admins and
partners configured over HTTP (clinicians, on-call rota, subscriptions, patient preferences: copied
into the shadow so the handlers see the same recipients) and acknowledgements/escalations of
alerts (HTTP and time)."""

from rapport_shared.projection import Projection, Table
from rapport_shared.topics import PRIVATE_CONTACTS, PRIVATE_PERSON_KEYS

PROJECTION = Projection(
    tables=(
        Table("patients", key=("person_id",)),
        # the per-person data keys (wrapped) from rapport.private.person-keys (docs/privacy.md)
        Table("contact_keys", key=("person_id",), exclude=("received_at",)),
        Table("episodes", key=("episode_id",)),
        Table("sessions", key=("session_id",)),
        Table("alerts", key=("alert_id",),
              columns=("alert_id", "episode_id", "kind", "clinician_id", "raised_at", "resolved_at")),
    ),
    note="patients (private contacts), episodes, sessions and safety alerts as the topics describe them;"
         " the delivery log, timers and HTTP-configured recipients are not rebuilt (nothing is sent in replay)",
    seed=("clinicians", "oncall", "subscriptions", "patient_preferences"),
    extra_groups={"-contacts": (PRIVATE_PERSON_KEYS, PRIVATE_CONTACTS)},
)
