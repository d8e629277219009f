"""What a patient's questionnaire request before a session asks for (pure; domain.md §3.4).

The measurement schedule (``rapport_shared.programmes``) decides, from the episode's target
condition and the session's place in the contracted course. Two notifier choices on top of it:
- a baseline-only instrument the intake already collected (its baseline scores) is not asked again
  before session 1; anything the schedule asks for another reason (every session, mid, end, every
  N-th session) is;
- an episode whose target condition is not known here (no ``intake.completed`` seen, e.g. an
  episode from before the schedule) gets what it got before, the intake's baseline instruments or
  ``DEFAULT_INSTRUMENTS``, with the risk screen added when they lack it.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport_shared.programmes import Schedule


def request_instruments(schedule: Schedule, *, target_condition: str | None, session_number: int,
                        contracted_sessions: int | None, intake_instruments: Sequence[str] | None,
                        default: Sequence[str]) -> list[str]:
    """The instrument codes to ask for, the risk screen first."""
    given = set(intake_instruments or ())
    if target_condition is None:
        legacy = list(intake_instruments or default)
        return [schedule.risk_screen] + [c for c in legacy if c != schedule.risk_screen]
    out = []
    for due in schedule.due(target_condition, session_number, contracted_sessions):
        if due.rater != "patient" or due.optional:
            continue  # e.g. HAM-D-17: a clinician rates it, the patient is not asked
        if set(due.reasons) <= {"baseline"} and due.instrument in given:
            continue  # the intake's baseline score is the baseline
        out.append(due.instrument)
    return out
