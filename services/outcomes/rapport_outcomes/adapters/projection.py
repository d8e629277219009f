"""What replay rebuilds in outcomes (shared/rapport_tools/replay.py, docs/replay.md).

The projection is what outcomes learns from the other services: the episodes and their baseline
scores (``rapport.intake.completed.v1``), each course's plan, sessions, attendance and end
(``rapport.course``) and the notifier's deliveries (``rapport.notifications``). Not projection:
scores submitted over HTTP and everything decided from them (safety alerts, their resolutions, the mid-course review, end-of-course evaluations) — records of
authority that Kafka cannot rebuild. Processing-time columns are left out of the hash."""

from rapport_shared.projection import Projection, Table

PROJECTION = Projection(
    tables=(
        Table("episodes", key=("episode_id",), exclude=("opened_at",)),
        Table("submissions", key=("submission_id",), where="{r}.source = 'intake'",
              exclude=("scored_at", "recorded_seq")),
        Table("courses", key=("episode_id",), exclude=("updated_at", "review_checked_at", "review_alert_id")),
        # Each session's time and status (rapport.course), kept for the FHIR record.
        Table("course_sessions", key=("session_id",), exclude=("updated_at",)),
        # The course events that introduced or moved each session (event ids survive a replay).
        Table("session_events", key=("event_id", "session_id")),
        # Each delivery's facts (the FHIR record's Communications).
        Table("communications", key=("notification_id",), exclude=("recorded_at",)),
    ),
    note="episodes, intake baselines, course progress and deliveries from rapport.intake, rapport.course"
         " and rapport.notifications;"
         " HTTP-submitted scores, alerts and evaluations are records of authority and are not rebuilt",
)
