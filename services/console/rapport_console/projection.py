"""What replay rebuilds in the console (shared/rapport_tools/replay.py, docs/replay.md).

Everything the console holds about an episode comes from the shared topics, so its whole read
model is projection: episodes, sessions, phase changes, the checklist, scores, alerts,
evaluations and deliveries. Not projection: the acknowledgements the console forwarded to the
notifier (no event tells them; a record of what was done here), and the care team (HTTP)."""

from rapport_shared.projection import Projection, Table

PROJECTION = Projection(
    tables=(
        Table("episodes", key=("episode_id",)),
        Table("sessions", key=("session_id",)),
        Table("phase_changes", key=("event_id",)),
        Table("checklist", key=("course_id", "item")),
        Table("scores", key=("submission_id",)),
        Table("alerts", key=("alert_id",)),
        Table("evaluations", key=("episode_id",)),
        Table("deliveries", key=("notification_id",)),
    ),
    note="the caseload read model (episodes, calendar, phases, checklist, scores, alerts, evaluations, deliveries)"
         " from every shared topic; acknowledgements made here and the care team are not rebuilt",
)
