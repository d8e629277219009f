"""A score trend chart as geometry for an inline SVG (rendered on the server: no script).

One chart per instrument: time across, the instrument's total range up; the points and the line
through them; the caseness cut-off as a dashed line; the reliable-change band (baseline ± the
instrument's reliable-change threshold) shaded; a vertical line where each phase began. The
templates draw what this computes, and the same points go in a table beside the chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 44, 20, 26, 44


@dataclass(frozen=True)
class Scale:
    """What the chart needs to know about an instrument (from the catalogue)."""

    code: str
    name: str
    low: float
    high: float
    caseness: float | None = None  # the cut-off value
    caseness_op: str = "ge"
    reliable_change: float | None = None  # the threshold
    bands: tuple[tuple[str, float], ...] = ()  # (label, lower bound)


@dataclass(frozen=True)
class ChartPoint:
    at: datetime
    total: float
    band: str | None
    session_number: int | None
    timepoint: str
    x: float
    y: float


@dataclass(frozen=True)
class Boundary:
    phase: str
    at: datetime
    x: float

    @property
    def anchor(self) -> str:
        """Where its label goes: after the line, or before it near the right edge."""
        return "end" if self.x > WIDTH - RIGHT - 90 else "start"


@dataclass(frozen=True)
class Tick:
    label: str
    pos: float


@dataclass
class Chart:
    scale: Scale
    points: list[ChartPoint]
    boundaries: list[Boundary]
    caseness_y: float | None
    band_top: float | None  # the reliable-change band, as y coordinates (top < bottom)
    band_bottom: float | None
    baseline: float | None
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def _fmt(v: float) -> str:
    return f"{v:g}"


def trend(scale: Scale, points: Sequence[tuple[datetime, float, str | None, int | None, str]],
          phase_starts: Sequence[tuple[str, datetime | None]] = (), now: datetime | None = None) -> Chart:
    """``points``: (administered at, total, band, session number, timepoint), any order.
    ``phase_starts``: (phase, when it began); the first phase needs no line, and a phase that
    has not begun by ``now`` (the plan's future) none either."""
    pts = sorted(points, key=lambda p: p[0])
    bounds = [(ph, at) for ph, at in list(phase_starts)[1:] if at is not None and (now is None or at <= now)]
    times = [p[0] for p in pts] + [at for _, at in bounds]
    if times:
        t0, t1 = min(times), max(times)
    else:
        t0 = t1 = datetime(2000, 1, 1)
    if t1 - t0 < timedelta(days=1):  # one day at least, the points in the middle
        mid = t0 + (t1 - t0) / 2
        t0, t1 = mid - timedelta(hours=12), mid + timedelta(hours=12)
    pad = (t1 - t0) * 0.04
    t0, t1 = t0 - pad, t1 + pad
    span = (t1 - t0).total_seconds()
    lo, hi = scale.low, scale.high

    def x(t: datetime) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return (HEIGHT - BOTTOM) - (HEIGHT - TOP - BOTTOM) * (v - lo) / ((hi - lo) or 1)

    chart_points = [ChartPoint(at, total, band, n, tp, round(x(at), 1), round(y(total), 1))
                    for at, total, band, n, tp in pts]
    baseline = pts[0][1] if pts else None
    band_top = band_bottom = None
    if baseline is not None and scale.reliable_change:
        band_top, band_bottom = round(y(baseline + scale.reliable_change), 1), round(y(baseline - scale.reliable_change), 1)
    y_values = sorted({lo, hi, *(b for _, b in scale.bands)})
    x_ticks = []
    n_ticks = 5
    fmt = "%d %b %Y" if t1 - t0 > timedelta(days=3) else "%d %b %H:%M"  # days apart, or within a day or two
    for i in range(n_ticks):
        t = t0 + pad + (t1 - t0 - 2 * pad) * (i / (n_ticks - 1))
        x_ticks.append(Tick(t.strftime(fmt), round(x(t), 1)))
    return Chart(
        scale=scale, points=chart_points,
        boundaries=[Boundary(ph, at, round(x(at), 1)) for ph, at in bounds],
        caseness_y=round(y(scale.caseness), 1) if scale.caseness is not None else None,
        band_top=band_top, band_bottom=band_bottom, baseline=baseline,
        x_ticks=x_ticks, y_ticks=[Tick(_fmt(v), round(y(v), 1)) for v in y_values])


@dataclass(frozen=True)
class Bar:
    label: str
    rate: float | None  # 0..1
    count: int
    denominator: int
    width: float  # px of the full bar area
    y: float


def rate_bars(rows: Sequence[tuple[str, int, int]], *, width: float = 360, row_height: float = 28) -> list[Bar]:
    """Horizontal bars for rates: (label, count, denominator) → geometry (a rate with no
    denominator is shown as "not determinable", with no bar)."""
    out = []
    for i, (label, count, denominator) in enumerate(rows):
        rate = count / denominator if denominator else None
        out.append(Bar(label, rate, count, denominator, round((rate or 0) * width, 1), i * row_height))
    return out
