"""The measurement schedule per programme (domain.md §3.4) as data, and what it asks for at a session.

``schedule.yaml`` (next to this module) says, for every programme and for each target condition,
which instruments are asked before every session, every N-th session, and at baseline (session
1), mid-course (session ⌈n/2⌉ of the n contracted sessions) and the end (session n). A clinic adds
to it with an overrides file (``RAPPORT_MEASUREMENT_OVERRIDES``): additive only; an override that
tries to remove or replace anything, above all the PHQ-9 risk screen, is refused when it is
loaded, never silently applied.

Everything here is pure except ``load_schedule``/``packaged_schedule`` (which read the files once).
The notifier asks ``questionnaire(...)`` for what a patient's request holds; the outcome reports ask
``expected_instruments(...)`` / ``missing_instruments(...)`` for what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ..contracts.base import TargetCondition
from ..instruments import Catalogue, load_catalogue

CodeStr = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Timepoint = Literal["baseline", "mid", "end"]
TIMEPOINTS: tuple[Timepoint, ...] = ("baseline", "mid", "end")
ALL = "all"  # the rules of every programme
# The environment variable a service's settings read the clinic's overrides file from.
OVERRIDES_ENV = "RAPPORT_MEASUREMENT_OVERRIDES"
PACKAGE = "rapport_shared.programmes"
DATA_FILE = "schedule.yaml"


class ScheduleError(ValueError):
    """The schedule or an override is invalid (raised when it is loaded, never when it is used)."""


class RiskScreenError(ScheduleError):
    """A schedule or override that would leave some session without the risk screen."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """One instrument, and when it is asked."""

    instrument: CodeStr
    every_nth_session: int | None = Field(default=None, ge=1, description="1 = before every session")
    at: tuple[Timepoint, ...] = ()
    optional: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _when(self) -> Rule:
        if self.every_nth_session is None and not self.at:
            raise ValueError(f"{self.instrument}: say when (every_nth_session and/or at)")
        if len(set(self.at)) != len(self.at):
            raise ValueError(f"{self.instrument}: a time point is listed twice in `at`")
        return self

    def reasons(self, session_number: int, n_sessions: int | None) -> tuple[str, ...]:
        """Why this rule asks for its instrument before ``session_number`` (empty: it does not)."""
        out: list[str] = []
        if self.every_nth_session is not None and session_number % self.every_nth_session == 0:
            n = self.every_nth_session
            out.append("every_session" if n == 1 else f"every_{_ordinal(n)}_session")
        for tp in self.at:
            if session_number == session_of(tp, n_sessions):
                out.append(tp)
        return tuple(out)


class _BaseFile(_Model):
    source: str | None = None
    risk_screen: CodeStr
    all: tuple[Rule, ...] = ()
    programmes: dict[str, tuple[Rule, ...]]


class _OverridesFile(_Model):
    source: str | None = None
    note: str | None = None
    add: dict[str, tuple[Rule, ...]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Due:
    """One instrument due before a session: why (``every_session``, ``every_4th_session``,
    ``baseline``, ``mid``, ``end``), who answers it (the catalogue's ``rater``), and whether it is
    only collected when someone chooses to (``optional``: never reported missing)."""

    instrument: str
    reasons: tuple[str, ...]
    rater: Literal["patient", "clinician"]
    optional: bool


def session_of(timepoint: Timepoint, n_sessions: int | None) -> int | None:
    """The session number of a time point in a course of ``n_sessions``: baseline 1, mid ⌈n/2⌉,
    end n (None when the count is not known: only the baseline is then placed)."""
    if timepoint == "baseline":
        return 1
    if n_sessions is None:
        return None
    if n_sessions < 1:
        raise ValueError(f"n_sessions must be at least 1, got {n_sessions}")
    return math.ceil(n_sessions / 2) if timepoint == "mid" else n_sessions


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _condition(condition: TargetCondition | str | None) -> str | None:
    if condition is None:
        return None
    try:
        return TargetCondition(condition).value
    except ValueError:
        raise ValueError(f"unknown target condition {condition!r} (one of: "
                         f"{', '.join(c.value for c in TargetCondition)})") from None


class Schedule:
    """The validated schedule: the rules of every programme and of each target condition, the
    packaged ones first, then a clinic's additions, in that order."""

    __slots__ = ("_rules", "catalogue", "origins", "risk_screen")

    def __init__(self, risk_screen: str, rules: Mapping[str, Iterable[Rule]], catalogue: Catalogue,
                 origins: tuple[str, ...] = ()) -> None:
        self.risk_screen = risk_screen
        self.catalogue = catalogue
        self.origins = origins
        self._rules: dict[str, tuple[Rule, ...]] = {k: tuple(v) for k, v in rules.items()}
        self._check()

    # ------------------------------------------------------------ building
    @classmethod
    def from_data(cls, data: Mapping[str, Any], overrides: Iterable[tuple[Mapping[str, Any], str]] = (), *,
                  catalogue: Catalogue | None = None, origin: str = DATA_FILE) -> Schedule:
        """The schedule from plain data (parsed YAML/JSON), then each ``(overrides, origin)`` added."""
        catalogue = catalogue or load_catalogue()
        try:
            base = _BaseFile.model_validate(data)
        except ValidationError as exc:
            raise ScheduleError(f"{origin}: {exc}") from None
        schedule = cls(base.risk_screen, {ALL: base.all, **base.programmes}, catalogue, (origin,))
        for extra, where in overrides:
            schedule = schedule.with_overrides(extra, origin=where)
        return schedule

    def with_overrides(self, data: Mapping[str, Any] | None, *, origin: str = "overrides") -> Schedule:
        """This schedule with a clinic's additions. Only ``add`` is understood: anything that would
        remove or replace a rule is refused (naming the risk screen when it is about it)."""
        if data is None:
            return self
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{origin}: an overrides file is a mapping with `add` (got {type(data).__name__})")
        unknown = sorted(set(data) - set(_OverridesFile.model_fields))
        if unknown:
            if self.risk_screen in _words(data[k] for k in unknown) or "risk_screen" in unknown:
                raise RiskScreenError(
                    f"{origin}: the risk screen ({self.risk_screen}, its item 9) is asked before every session of every "
                    "programme and cannot be removed or replaced by a clinic (domain.md §3.4); overrides can only add "
                    f"instruments (refused: {', '.join(unknown)})")
            raise ScheduleError(f"{origin}: overrides can only add instruments (domain.md §3.4): `add` is understood, "
                                f"not {', '.join(unknown)}")
        try:
            extra = _OverridesFile.model_validate(data)
        except ValidationError as exc:
            raise ScheduleError(f"{origin}: {exc}") from None
        rules = dict(self._rules)
        for key, added in extra.add.items():
            if key not in rules:
                raise ScheduleError(f"{origin}: unknown programme {key!r} under `add` (one of: {', '.join(rules)})")
            rules[key] = rules[key] + tuple(added)
        return Schedule(self.risk_screen, rules, self.catalogue, self.origins + (origin,))

    def _check(self) -> None:
        where = " + ".join(self.origins) or "schedule"
        expected = {ALL, *(c.value for c in TargetCondition)}
        if set(self._rules) != expected:
            missing, unknown = sorted(expected - set(self._rules)), sorted(set(self._rules) - expected)
            raise ScheduleError(f"{where}: programmes must be exactly the target conditions"
                                + (f"; missing: {', '.join(missing)}" if missing else "")
                                + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        for key, rules in self._rules.items():
            for rule in rules:
                if rule.instrument not in self.catalogue:
                    raise ScheduleError(f"{where}: {key}: unknown instrument {rule.instrument!r} (add it to the "
                                        f"catalogue first; known: {', '.join(self.catalogue.codes)})")
        if self.risk_screen not in self.catalogue:
            raise ScheduleError(f"{where}: unknown risk-screen instrument {self.risk_screen!r}")
        if not any(r.instrument == self.risk_screen and r.every_nth_session == 1 and not r.optional
                   for r in self._rules[ALL]):
            raise RiskScreenError(f"{where}: the risk screen ({self.risk_screen}) must be asked before every session "
                                  "of every programme: `all` needs it with every_nth_session: 1, not optional "
                                  "(domain.md §3.4)")
        if self.catalogue.get(self.risk_screen).rater != "patient":
            raise RiskScreenError(f"{where}: the risk screen ({self.risk_screen}) must be a patient questionnaire")

    # ------------------------------------------------------------ reading
    def rules(self, condition: TargetCondition | str | None) -> tuple[Rule, ...]:
        """Every programme's rules, then the condition's (None: every programme's only)."""
        key = _condition(condition)
        return self._rules[ALL] + (self._rules[key] if key else ())

    def due(self, condition: TargetCondition | str | None, session_number: int,
            n_sessions: int | None) -> tuple[Due, ...]:
        """What is asked before session ``session_number`` of a course of ``n_sessions`` contracted
        sessions (None: not known, so no mid-course or end), for an episode of ``condition`` (None:
        not known, only what every programme asks). The risk screen first, then in the order of the
        data; an instrument two rules ask for is listed once, with both reasons, and is optional
        only if every rule that asks for it is."""
        if session_number < 1:
            raise ValueError(f"session_number must be at least 1, got {session_number}")
        reasons: dict[str, list[str]] = {}
        required: dict[str, bool] = {}
        for rule in self.rules(condition):
            why = rule.reasons(session_number, n_sessions)
            if not why:
                continue
            reasons.setdefault(rule.instrument, [])
            reasons[rule.instrument] += [w for w in why if w not in reasons[rule.instrument]]
            required[rule.instrument] = required.get(rule.instrument, False) or not rule.optional
        order = sorted(reasons, key=lambda code: code != self.risk_screen)  # stable: data order otherwise
        return tuple(Due(code, tuple(reasons[code]), self.catalogue.get(code).rater, not required[code])
                     for code in order)

    def expected_instruments(self, condition: TargetCondition | str | None, session_number: int,
                             n_sessions: int | None, *, include_optional: bool = False,
                             rater: Literal["patient", "clinician"] | None = None) -> tuple[str, ...]:
        """The codes ``due`` lists (by default the ones that are not optional, of either rater)."""
        return tuple(d.instrument for d in self.due(condition, session_number, n_sessions)
                     if (include_optional or not d.optional) and (rater is None or d.rater == rater))

    def questionnaire(self, condition: TargetCondition | str | None, session_number: int,
                      n_sessions: int | None) -> tuple[str, ...]:
        """What a patient's questionnaire request before that session asks for: the patient-rated
        instruments due (the risk screen always among them)."""
        return self.expected_instruments(condition, session_number, n_sessions, rater="patient")

    def missing_instruments(self, condition: TargetCondition | str | None, session_number: int,
                            n_sessions: int | None, collected: Iterable[str]) -> tuple[str, ...]:
        """The expected (not optional) instruments of that session that are not in ``collected``."""
        have = set(collected)
        return tuple(c for c in self.expected_instruments(condition, session_number, n_sessions) if c not in have)

    def course(self, condition: TargetCondition | str | None, n_sessions: int) -> dict[int, tuple[str, ...]]:
        """Session number → the expected instruments, for every contracted session."""
        return {k: self.expected_instruments(condition, k, n_sessions) for k in range(1, n_sessions + 1)}


def _words(values: Iterable[Any]) -> set[str]:
    """Every string found in nested data (to tell whether a refused key is about the risk screen)."""
    out: set[str] = set()
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, Mapping):
            stack += [*v.keys(), *v.values()]
        elif isinstance(v, (list, tuple, set)):
            stack += list(v)
    return out


def read_file(path: str | Path) -> Any:
    """A YAML (or JSON) file's data; an unreadable or malformed file is a ``ScheduleError``."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScheduleError(f"{path}: cannot read the measurement schedule: {exc}") from None


@cache
def packaged_schedule() -> Schedule:
    """The schedule as shipped (``schedule.yaml``), validated once."""
    text = (resources.files(PACKAGE) / DATA_FILE).read_text(encoding="utf-8")
    return Schedule.from_data(yaml.safe_load(text), origin=DATA_FILE)


@cache
def load_schedule(overrides_path: str | None = None) -> Schedule:
    """The packaged schedule plus a clinic's overrides file (YAML or JSON; None or "": none).
    Raises ``ScheduleError`` (``RiskScreenError`` for an attempt on the risk screen) naming the file."""
    if not overrides_path:
        return packaged_schedule()
    return packaged_schedule().with_overrides(read_file(overrides_path), origin=str(overrides_path))


def expected_instruments(condition: TargetCondition | str | None, session_number: int, n_sessions: int | None, *,
                         schedule: Schedule | None = None, include_optional: bool = False) -> tuple[str, ...]:
    """The instruments expected before session ``session_number`` of ``n_sessions`` for an episode
    of ``condition``, per ``schedule`` (default: the packaged one, no clinic overrides)."""
    return (schedule or packaged_schedule()).expected_instruments(condition, session_number, n_sessions,
                                                                   include_optional=include_optional)


def missing_instruments(condition: TargetCondition | str | None, session_number: int, n_sessions: int | None,
                        collected: Iterable[str], *, schedule: Schedule | None = None) -> tuple[str, ...]:
    """The expected instruments of that session not in ``collected`` (see ``expected_instruments``)."""
    return (schedule or packaged_schedule()).missing_instruments(condition, session_number, n_sessions, collected)
