"""Which instruments the measurement schedule expected of an episode, and which are missing
(domain.md 3.4; issue 15 item 1). Pure.

The schedule (``rapport_shared.programmes``: per target condition, before every session, every
N-th session, at baseline / mid-course / end of the n contracted sessions) says what is expected
before each session; outcomes counts it over the sessions the patient **attended** (a missed or
cancelled session expects nothing; IPT-A's optional parent session is not a numbered position).
A session's instrument is received when a score of it names that session (``session_number``),
and also, with no session number:
- the intake's (or any first) score, timepoint ``baseline``, for what session 1 asks only as the
  baseline (the notifier does not ask for it again: its baseline is the intake's);
- a score given as ``end`` for what the last contracted session asks only as the end.
Optional rules (HAM-D-17, when a clinician rates it) are never expected, so never missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rapport_shared.contracts.outcomes import InstrumentMeasurement, MeasurementRecord
from rapport_shared.programmes import Schedule

from .fhir_record import CourseSession


@dataclass(frozen=True)
class Collected:
    """A stored score, as far as the schedule cares."""

    instrument: str
    session_number: int | None
    timepoint: str  # baseline | session | end


def attended_numbers(sessions: Iterable[CourseSession], attended_count: int | None = None) -> list[int]:
    """The numbers of the attended (numbered) sessions; when outcomes saw none of them but the
    course reports ``attended_count`` (its events seen only in part), positions 1..that count
    (positions are attended in order)."""
    seen = sorted({s.number for s in sessions if s.status == "attended" and not s.optional_parent})
    if not seen and attended_count:
        return list(range(1, attended_count + 1))
    return seen


def _received(code: str, number: int, reasons: tuple[str, ...], collected: list[Collected]) -> bool:
    for c in collected:
        if c.instrument != code:
            continue
        if c.session_number == number:
            return True
        if c.session_number is None and reasons and set(reasons) <= {"baseline"} and c.timepoint == "baseline":
            return True
        if c.session_number is None and reasons and set(reasons) <= {"end"} and c.timepoint == "end":
            return True
    return False


def measurement_record(schedule: Schedule, *, target_condition: str | None, contracted_sessions: int | None,
                       sessions: Iterable[int], collected: Iterable[Collected]) -> MeasurementRecord:
    """Expected vs received per instrument over ``sessions`` (attended session numbers) of a course
    of ``contracted_sessions`` (None: not known, so no mid-course or end is placed)."""
    numbers = sorted(set(sessions))
    have = list(collected)
    counts: dict[str, dict] = {}
    for number in numbers:
        for due in schedule.due(target_condition, number, contracted_sessions):
            if due.optional:
                continue
            entry = counts.setdefault(due.instrument, {"expected": 0, "received": 0, "missing_sessions": []})
            entry["expected"] += 1
            if _received(due.instrument, number, due.reasons, have):
                entry["received"] += 1
            else:
                entry["missing_sessions"].append(number)
    instruments = {code: InstrumentMeasurement(**v) for code, v in counts.items()}
    return MeasurementRecord(contracted_sessions=contracted_sessions, sessions=numbers, instruments=instruments,
                             missing=[code for code, m in instruments.items() if m.missing_sessions])
