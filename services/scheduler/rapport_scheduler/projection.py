"""What replay rebuilds in the scheduler (shared/rapport_tools/replay.py, docs/replay.md).

The scheduler is mostly a record of authority: the calendar and the phase state machine move by
clinicians' HTTP commands. Its projection is what it takes from the other services: each course
as opened from ``rapport.intake.completed.v1`` (ids, person, template, clinician, availability —
ids are derived from the episode, so a replay plans the same course id) and the end-of-course
remission from ``rapport.outcome.evaluated.v1``. Booking rules configured over HTTP (clinician
hours, closure days) are copied into the shadow so planning sees the same calendar rules."""

from rapport_shared.projection import Projection, Table

PROJECTION = Projection(
    tables=(
        Table("courses", key=("course_id",),
              columns=("course_id", "episode_id", "person_id", "template_id", "clinician_id", "availability",
                       "remission")),
    ),
    note="courses as opened from intake events (ids, person, template, clinician, availability) and their"
         " remission from outcome evaluations; the calendar and phases (HTTP commands) are records of authority",
    seed=("clinician_hours", "closure_days"),
)
