"""Programme templates as data (``templates.json``, domain.md section 2) and what follows from them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rapport_shared.contracts import Phase, PhaseSpan
from rapport_shared.contracts.course import SessionKind

DEFAULT_PATH = Path(__file__).parent / "templates.json"


class UnknownTemplate(LookupError):
    pass


class TemplateError(ValueError):
    """The template data breaks a structural rule (caught at load, not mid-course)."""


@dataclass(frozen=True)
class Maintenance:
    cadence_days: int
    max_sessions: int


@dataclass(frozen=True)
class OptionalParentSession:
    """IPT-A (domain.md 2): "a parent joins ... optionally one mid-phase session". The clinician may
    add up to ``max_sessions`` parent sessions while the course is in ``phase``, beside the contract
    (they hold no contract position and are not treatment sessions of the contract)."""

    phase: Phase = Phase.middle
    max_sessions: int = 1


@dataclass(frozen=True)
class Template:
    id: str
    sessions: int  # the default contract n
    initial: int  # i: the most sessions the initial phase may take
    termination: int  # t: the last t sessions of the contract
    cadence_days: int
    min_sessions: int  # a new contract stays within [min_sessions, max_sessions]
    max_sessions: int
    session_kind: SessionKind = SessionKind.individual
    parent_positions: tuple[str, ...] = ()  # IPT-A: "first", "last"
    optional_parent: OptionalParentSession | None = None  # IPT-A: one more, added in the middle phase
    maintenance: Maintenance = Maintenance(28, 36)

    def kind_for(self, number: int, contracted: int) -> SessionKind:
        """The kind of the session at ``number`` under a contract of ``contracted`` sessions."""
        if ("first" in self.parent_positions and number == 1) or ("last" in self.parent_positions and number == contracted):
            return SessionKind.parent
        return self.session_kind

    def phase_plan(self, contracted: int) -> list[PhaseSpan]:
        """Planned boundaries: initial 1..i, middle i+1..n−t, termination n−t+1..n (domain.md 2)."""
        return [
            PhaseSpan(phase=Phase.initial, first_session=1, last_session=self.initial),
            PhaseSpan(phase=Phase.middle, first_session=self.initial + 1, last_session=contracted - self.termination),
            PhaseSpan(phase=Phase.termination, first_session=contracted - self.termination + 1, last_session=contracted),
        ]


def _check(t: Template) -> Template:
    if not (1 <= t.initial and 1 <= t.termination and t.cadence_days >= 1):
        raise TemplateError(f"{t.id}: initial, termination and cadence must be positive")
    if not (t.min_sessions <= t.sessions <= t.max_sessions):
        raise TemplateError(f"{t.id}: sessions {t.sessions} outside its bounds {t.min_sessions}-{t.max_sessions}")
    # Every contract within the bounds must leave room for a middle phase after the initial one.
    if t.initial + t.termination >= t.min_sessions:
        raise TemplateError(f"{t.id}: initial + termination must be fewer than min_sessions")
    if t.optional_parent is not None:
        # Only the middle phase has a place for it: between the initial-phase checklist and the
        # contract's termination sessions (the rules in ``decider.add_parent_session``).
        if t.optional_parent.phase != Phase.middle:
            raise TemplateError(f"{t.id}: parent_sessions.optional_in must be 'middle'")
        if t.optional_parent.max_sessions < 1:
            raise TemplateError(f"{t.id}: parent_sessions.optional_max must be at least 1")
    return t


def _optional_parent(tid: str, parent: dict) -> OptionalParentSession | None:
    if "optional_in" not in parent:
        return None
    try:
        phase = Phase(parent["optional_in"])
    except ValueError:
        raise TemplateError(f"{tid}: parent_sessions.optional_in {parent['optional_in']!r} is not a phase") from None
    return OptionalParentSession(phase=phase, max_sessions=int(parent.get("optional_max", 1)))


def load(path: Path = DEFAULT_PATH) -> dict[str, Template]:
    raw = json.loads(path.read_text())
    m = raw.get("maintenance", {})
    maintenance = Maintenance(int(m.get("cadence_days", 28)), int(m.get("max_sessions", 36)))
    out = {}
    for k, v in raw["templates"].items():
        out[k] = _check(Template(
            id=k, sessions=v["sessions"], initial=v["initial"], termination=v["termination"],
            cadence_days=v["cadence_days"], min_sessions=v["min_sessions"], max_sessions=v["max_sessions"],
            session_kind=SessionKind(v.get("session_kind", "individual")),
            parent_positions=tuple(v.get("parent_sessions", {}).get("positions", ())),
            optional_parent=_optional_parent(k, v.get("parent_sessions", {})),
            maintenance=maintenance,
        ))
    return out


@cache
def templates() -> dict[str, Template]:
    return load()


def template(template_id: str) -> Template:
    try:
        return templates()[template_id]
    except KeyError:
        raise UnknownTemplate(template_id) from None
