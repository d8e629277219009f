"""Cohort outcome rates by template and by target condition, from end-of-course evaluations.

The definitions of outcomes' cohort report (docs/outcomes.md), so the two agree:
- ended: every evaluated course; finished: at least the minimum attended treatment sessions.
- recovery and reliable recovery: / finished courses at caseness at baseline whose value is
  determinable; reliable improvement and deterioration: / finished courses where determinable.
- a rate with no denominator is not determinable (shown as such, never as 0 %).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

METRICS = (("recovery", "Recovery"), ("reliable_improvement", "Reliable improvement"),
           ("reliable_recovery", "Reliable recovery"), ("reliable_deterioration", "Reliable deterioration"))
_NEEDS_CASENESS = {"recovery", "reliable_recovery"}


@dataclass(frozen=True)
class Rate:
    metric: str
    label: str
    count: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.count / self.denominator if self.denominator else None


@dataclass(frozen=True)
class Group:
    key: str
    ended: int
    finished: int
    rates: tuple[Rate, ...]


def summarise(key: str, rows: list[Mapping[str, Any]]) -> Group:
    finished = [r for r in rows if r["finished_course"]]
    rates = []
    for metric, label in METRICS:
        pool = [r for r in finished if r["counts_toward_recovery"] or metric not in _NEEDS_CASENESS]
        known = [r[metric] for r in pool if r[metric] is not None]
        rates.append(Rate(metric, label, sum(1 for v in known if v), len(known)))
    return Group(key, len(rows), len(finished), tuple(rates))


def by(rows: Iterable[Mapping[str, Any]], key: str) -> list[Group]:
    """Groups by ``key`` (a row field: ``template`` or ``condition``), sorted, plus nothing else:
    the caller adds ``summarise("all", rows)`` for the total."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[key] or "unknown", []).append(r)
    return [summarise(k, v) for k, v in sorted(groups.items())]
