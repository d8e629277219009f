"""What replay rebuilds in intake: nothing (shared/rapport_tools/replay.py, docs/replay.md).

Intake consumes no topic: every table is the record of what clinicians entered over HTTP
(referrals, consent, contact details, baselines, risk reviews, audit). Its events are derived from
those records, not the other way round, so they are backed up with Postgres, not rebuilt from Kafka."""

from rapport_shared.projection import Projection

PROJECTION = Projection(
    tables=(),
    note="intake has no projection: it consumes no topic, and its tables are the records clinicians entered"
         " over HTTP (restore them from Postgres backups; Kafka holds only what they caused)",
)
