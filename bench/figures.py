"""Figures: one row per measure, percentiles, and the printed table (pure; no infrastructure)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence


@dataclass
class Figure:
    """One measured figure: a rate (``rate`` in ``unit``) or a distribution of durations (ms)."""

    benchmark: str
    measure: str
    n: int
    rate: float | None = None
    unit: str = ""
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method (a value that was observed)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def distribution(benchmark: str, measure: str, seconds: Sequence[float], note: str = "") -> Figure:
    """A Figure of p50/p95/p99/max from durations given in seconds. With fewer than 100 values p99 is
    the maximum (nearest rank), as p95 is below 20."""
    ms = [s * 1000 for s in seconds]
    return Figure(benchmark, measure, len(ms), p50_ms=percentile(ms, 50), p95_ms=percentile(ms, 95),
                  p99_ms=percentile(ms, 99), max_ms=max(ms), note=note)


def rate(benchmark: str, measure: str, n: int, seconds: float, unit: str = "events/s", note: str = "") -> Figure:
    return Figure(benchmark, measure, n, rate=n / seconds if seconds > 0 else float("inf"), unit=unit, note=note,
                  extra={"seconds": round(seconds, 3)})


def _num(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    if 0 < abs(x) < 1 and digits:  # a ratio: keep three decimals
        return f"{x:.3f}"
    if x >= 100 or digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


COLUMNS = ("benchmark", "measure", "n", "rate", "p50 ms", "p95 ms", "p99 ms", "max ms")


def rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    out = []
    for f in figures:
        r = f"{_num(f.rate, 1)} {f.unit}".strip() if f.rate is not None else "-"
        out.append((f.benchmark, f.measure, str(f.n), r, _num(f.p50_ms, 1), _num(f.p95_ms, 1), _num(f.p99_ms, 1),
                    _num(f.max_ms, 1)))
    return out


def table(figures: Sequence[Figure], markdown: bool = False) -> str:
    """The figures as an aligned text table, or a Markdown table (for docs/performance.md)."""
    body = rows(figures)
    notes = [(i, f) for i, f in enumerate(figures, 1) if f.note]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(COLUMNS))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        if notes:
            lines += ["", *(f"- row {i} ({f.benchmark} / {f.measure}): {f.note}" for i, f in notes)]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    right = [i >= 2 for i in range(len(COLUMNS))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if rj else c.ljust(w) for c, w, rj in zip(cells, widths, right)).rstrip()

    lines = [fmt(COLUMNS), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in body]
    if notes:
        lines += ["", "notes (by row):", *(f"  [{i}] {f.benchmark} / {f.measure}: {f.note}" for i, f in notes)]
    return "\n".join(lines)
