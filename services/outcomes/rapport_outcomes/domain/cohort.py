"""Cohort report (NHS Talking Therapies style) from end-of-course evaluations.

Definitions (each rate is ``count / denominator``; ``None`` when the denominator is 0):
- ended: every evaluated course; finished: at least the minimum attended sessions (domain.md 3.2).
- recovery rate: recovered / finished courses at caseness at baseline (only they count toward
  recovery) whose recovery is determinable. Reliable recovery likewise.
- reliable improvement / deterioration rate: / finished courses where it is determinable
  (a paired measure with a reliable-change threshold was collected).
- response / remission (trial metrics, PHQ-9): / finished courses with a PHQ-9 pair
  (response also needs a baseline above 0).
- condition measures (domain.md 3.4: EDE-Q for eating disorders, AUDIT for substance use), per
  instrument, beside the pair: finished courses that expected it, how many had it paired (a
  baseline and a later score) and how many missed it, the mean raw change of the paired ones, and
  reliable improvement / deterioration / finished courses with a paired score, or, for an
  instrument with no reliable-change criterion, the words "no reliable-change criterion" and the
  raw change only.
- measurement (domain.md 3.4), per instrument, over every ended course whose evaluation recorded it
  (finished or not: an early end still had its sessions measured): the sessions before which the
  measurement schedule expected it, how many of those had a score, how many are missing, the
  received / expected rate, and the episodes with at least one missing.
Unfinished courses are counted but never in a rate's denominator (measurement aside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

from rapport_shared.instruments import NO_RELIABLE_CHANGE_CRITERION

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
    # rapport.outcome.evaluated.v1 condition_measures, as stored (JSON): code → its outcome.
    condition_measures: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # rapport.outcome.evaluated.v1 measurement, as stored (JSON); None for evaluations stored before it.
    measurement: Mapping[str, Any] | None = None


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
    measures = condition_measures(finished)
    if measures:
        out["condition_measures"] = measures
    measured = measurement(rows)
    if measured:
        out["measurement"] = measured
    return out


def measurement(rows: list[EvaluationRow]) -> dict:
    """Expected vs received per instrument, summed over the ended courses with a measurement record."""
    records = [r.measurement for r in rows if r.measurement is not None]
    if not records:
        return {}
    by_code: dict[str, dict] = {}
    for record in records:
        for code, m in (record.get("instruments") or {}).items():
            entry = by_code.setdefault(code, {"expected": 0, "received": 0, "missing": 0, "episodes_missing": 0})
            entry["expected"] += m["expected"]
            entry["received"] += m["received"]
            entry["missing"] += len(m.get("missing_sessions") or ())
            entry["episodes_missing"] += 1 if m.get("missing_sessions") else 0
    for entry in by_code.values():
        entry["rate"] = _rate(entry["received"], entry["expected"])
    return {"episodes": len(records), "instruments": dict(sorted(by_code.items()))}


def condition_measures(finished: list[EvaluationRow]) -> dict:
    """Per condition-specific measure, over the finished courses that expected it."""
    by_code: dict[str, list[Mapping[str, Any]]] = {}
    for r in finished:
        for code, m in r.condition_measures.items():
            by_code.setdefault(code, []).append(m)
    out = {}
    for code, outcomes in sorted(by_code.items()):
        paired = [m for m in outcomes if m.get("status") == "paired"]
        criteria = {m.get("reliable_change_criterion") for m in outcomes}
        criterion = criteria.pop() if len(criteria) == 1 else "mixed"
        changes = [m["change"] for m in paired if m.get("change") is not None]
        entry: dict = {
            "reliable_change_criterion": criterion,
            "episodes": len(outcomes),
            "paired": len(paired),
            "missing": len(outcomes) - len(paired),
            "mean_change": round(sum(changes) / len(changes), 2) if changes else None,
        }
        decided = [m["reliable_change"] for m in paired if m.get("reliable_change") is not None]
        if criterion == "none":
            entry["reliable_change_note"] = f"{NO_RELIABLE_CHANGE_CRITERION}: raw change only"
            entry["reliable_improvement"] = entry["reliable_deterioration"] = None
        else:
            for metric, wanted in (("reliable_improvement", "improved"), ("reliable_deterioration", "deteriorated")):
                count = sum(1 for v in decided if v == wanted)
                entry[metric] = {"count": count, "denominator": len(decided), "rate": _rate(count, len(decided))}
        out[code] = entry
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
