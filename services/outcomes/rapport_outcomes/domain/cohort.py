"""Cohort report (NHS Talking Therapies style) from end-of-course evaluations.

Definitions (each rate is ``count / denominator``; ``None`` when the denominator is 0):
- ended: every evaluated course; finished: at least the minimum attended sessions (domain.md 3.2).
- recovery rate: recovered / finished courses at caseness at baseline (only they count toward
  recovery) whose recovery is determinable. Reliable recovery likewise.
- reliable improvement / deterioration rate: / finished courses where it is determinable
  (a paired measure with a reliable-change threshold was collected).
- response / remission (trial metrics, PHQ-9): / finished courses with a PHQ-9 pair
  (response also needs a baseline above 0).
Unfinished courses are counted but never in a rate's denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

GroupBy = Literal["template", "clinician"]

METRICS = ("recovery", "reliable_recovery", "reliable_improvement", "reliable_deterioration", "response", "remission")
_NEEDS_CASENESS = {"recovery", "reliable_recovery"}


@dataclass(frozen=True)
class EvaluationRow:
    template_id: str
    clinician_id: str
    finished_course: bool
    counts_toward_recovery: bool
    recovery: bool | None
    reliable_recovery: bool | None
    reliable_improvement: bool | None
    reliable_deterioration: bool | None
    response: bool | None
    remission: bool | None


def _rate(count: int, denominator: int) -> float | None:
    return round(count / denominator, 4) if denominator else None


def summarise(rows: list[EvaluationRow]) -> dict:
    finished = [r for r in rows if r.finished_course]
    out: dict = {
        "episodes_ended": len(rows),
        "episodes_finished": len(finished),
        "finished_at_caseness": sum(1 for r in finished if r.counts_toward_recovery),
    }
    for metric in METRICS:
        pool = [r for r in finished if (r.counts_toward_recovery or metric not in _NEEDS_CASENESS)]
        known = [getattr(r, metric) for r in pool if getattr(r, metric) is not None]
        count = sum(1 for v in known if v)
        out[metric] = {"count": count, "denominator": len(known), "rate": _rate(count, len(known))}
    return out


def cohort_report(rows: Iterable[EvaluationRow], group_by: GroupBy) -> dict:
    rows = list(rows)
    key = (lambda r: r.template_id) if group_by == "template" else (lambda r: r.clinician_id)
    groups: dict[str, list[EvaluationRow]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return {
        "group_by": group_by,
        "groups": [{group_by + "_id": k, **summarise(v)} for k, v in sorted(groups.items())],
        "total": summarise(rows),
    }
