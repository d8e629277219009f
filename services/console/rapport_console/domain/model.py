"""What a clinician sees, computed from the read model's rows (pure: no I/O, no clock).

- the caseload: one row per episode with its phase, next session, latest PHQ-9/GAD-7 (band and
  change since baseline) and open alerts; episodes with open alerts first, urgent ones first;
- the course timeline: the phases with their sessions (attended, missed, cancelled, moved), the
  phase a session belongs to following the plan and every phase change since.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence
from uuid import UUID

CASELOAD_INSTRUMENTS = ("phq9", "gad7")
PHASE_ORDER = ("initial", "middle", "termination", "completed", "maintenance", "ended_early")


@dataclass(frozen=True)
class Latest:
    """An instrument's latest score beside the episode's baseline."""

    instrument: str
    total: float
    band: str | None
    caseness: bool | None
    administered_at: datetime
    baseline_total: float | None
    change: float | None  # latest − baseline (negative: fewer symptoms)
    reliable_change: str | None


@dataclass(frozen=True)
class CaseloadRow:
    episode_id: UUID
    phase: str | None
    template_id: str | None
    focus: str | None
    next_session: datetime | None
    next_session_number: int | None
    latest: Mapping[str, Latest]
    open_alerts: int
    urgent_alerts: int
    ended: bool


def latest_scores(scores: Iterable[Mapping[str, Any]], instruments: Sequence[str] = CASELOAD_INSTRUMENTS) -> dict[str, Latest]:
    """Per instrument: the latest score (by administration time) and its change since the first
    (the baseline). Scores are the read model's rows of one episode."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for s in scores:
        if s["instrument"] in instruments:
            by.setdefault(s["instrument"], []).append(s)
    out = {}
    for code, rows in by.items():
        rows = sorted(rows, key=lambda r: (r["administered_at"], str(r["submission_id"])))
        first, last = rows[0], rows[-1]
        baseline = last["baseline_total"] if last["baseline_total"] is not None else first["total"]
        change = last["change_from_baseline"]
        if change is None and len(rows) > 1:
            change = last["total"] - baseline
        out[code] = Latest(instrument=code, total=last["total"], band=last["band"], caseness=last["caseness"],
                           administered_at=last["administered_at"], baseline_total=baseline if len(rows) > 1 else None,
                           change=change if len(rows) > 1 else None, reliable_change=last["reliable_change"])
    return out


def next_session(sessions: Iterable[Mapping[str, Any]], now: datetime) -> Mapping[str, Any] | None:
    upcoming = [s for s in sessions if s["status"] == "scheduled" and s["starts_at"] >= now]
    return min(upcoming, key=lambda s: (s["starts_at"], s["number"])) if upcoming else None


def open_alerts(alerts: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [a for a in alerts if a["resolved_at"] is None]


def caseload(episodes: Iterable[Mapping[str, Any]], sessions: Iterable[Mapping[str, Any]],
             scores: Iterable[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]], now: datetime) -> list[CaseloadRow]:
    """The caseload, open alerts first (urgent before routine, more before fewer), then the
    episodes with a next session (soonest first), then the rest; ended courses last."""
    def group(rows: Iterable[Mapping[str, Any]]) -> dict[UUID, list[Mapping[str, Any]]]:
        out: dict[UUID, list[Mapping[str, Any]]] = {}
        for r in rows:
            out.setdefault(r["episode_id"], []).append(r)
        return out

    s_by, sc_by, a_by = group(sessions), group(scores), group(alerts)
    rows = []
    for e in episodes:
        eid = e["episode_id"]
        nxt = next_session(s_by.get(eid, []), now) if e["ended_at"] is None else None
        still_open = open_alerts(a_by.get(eid, []))
        rows.append(CaseloadRow(
            episode_id=eid, phase=e["phase"], template_id=e["course_template_id"] or e["template_id"],
            focus=e["focus_primary"], next_session=nxt["starts_at"] if nxt else None,
            next_session_number=nxt["number"] if nxt else None, latest=latest_scores(sc_by.get(eid, [])),
            open_alerts=len(still_open), urgent_alerts=sum(1 for a in still_open if a["urgency"] == "urgent"),
            ended=e["ended_at"] is not None))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(rows, key=lambda r: (r.open_alerts == 0, -r.urgent_alerts, -r.open_alerts, r.ended,
                                       r.next_session or far, str(r.episode_id)))


# ---- the course timeline ----------------------------------------------------------------------

@dataclass(frozen=True)
class PhaseStart:
    phase: str
    first_session: int
    at: datetime | None  # when the phase began on the calendar (its first session's time)


@dataclass
class PhaseBlock:
    phase: str
    first_session: int
    sessions: list[Mapping[str, Any]] = field(default_factory=list)


def phase_starts(plan: Sequence[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]],
                 sessions: Sequence[Mapping[str, Any]]) -> list[PhaseStart]:
    """Where each phase starts (session number, and the time of that session), from the plan as
    corrected by every phase change since (in the order they happened)."""
    starts: dict[int, str] = {int(p["first_session"]): p["phase"] for p in plan}
    for c in sorted(changes, key=lambda c: c["changed_at"]):
        n = int(c["effective_from_session"])
        starts = {k: v for k, v in starts.items() if k < n}
        starts[n] = c["to_phase"]
    when = {}
    for s in sessions:
        if s["status"] != "cancelled":
            when.setdefault(int(s["number"]), s["starts_at"])
    changed_at = {int(c["effective_from_session"]): c["changed_at"] for c in changes}
    return [PhaseStart(phase, n, when.get(n) or changed_at.get(n)) for n, phase in sorted(starts.items())]


def phase_of(n: int, starts: Sequence[PhaseStart]) -> str | None:
    found = None
    for s in starts:
        if s.first_session <= n:
            found = s.phase
    return found


def timeline(starts: Sequence[PhaseStart], sessions: Sequence[Mapping[str, Any]]) -> list[PhaseBlock]:
    """The phases in order, each with its sessions (cancelled ones kept, shown as such); an
    attended session is placed in the phase it was attended in."""
    blocks: list[PhaseBlock] = []
    by_phase: dict[str, PhaseBlock] = {}
    for s in starts:
        block = PhaseBlock(s.phase, s.first_session)
        blocks.append(block)
        by_phase.setdefault(s.phase, block)
    for s in sorted(sessions, key=lambda s: (s["number"], s["starts_at"])):
        phase = s["phase"] or phase_of(int(s["number"]), starts)
        block = by_phase.get(phase) if phase else None
        if block is None:
            block = PhaseBlock(phase or "unplanned", int(s["number"]))
            blocks.append(block)
            by_phase[block.phase] = block
        block.sessions.append(s)
    return [b for b in blocks if b.sessions or b.phase in ("completed", "ended_early")]


def recipient(ref: str) -> str:
    """A delivery's recipient as the page shows it: the role and the pseudonymous id (never an
    address: the read model holds none)."""
    role, _, who = ref.partition(":")
    return {"patient": "patient", "clinician": f"clinician {who}", "oncall": f"on call ({who})",
            "partner": "partner system"}.get(role, role)
