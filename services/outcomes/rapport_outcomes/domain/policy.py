"""The configurable parts of outcomes' rules (domain.md 3.2, 3.3), as data.

Defaults are exactly domain.md's; a clinic changes them through settings (``RAPPORT_*``), never
in code. The instrument rules themselves (bands, cut-offs, thresholds) live in the catalogue.
"""

from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Mapping

from rapport_shared.contracts import Phase
from rapport_shared.contracts.outcomes import AlertKind, AlertUrgency
from rapport_shared.instruments import DEFAULT_PAIRED_MEASURES, Catalogue, load_catalogue
from rapport_shared.programmes import Schedule, packaged_schedule

# domain.md 3.3: item 9 > 0 raises a safety alert. Keyed by the catalogue's flag code, so a
# clinic that adds an instrument with a risk item raises the same alert by data alone.
DEFAULT_ALERT_FLAGS: Mapping[str, AlertKind] = MappingProxyType({"safety_item_positive": AlertKind.safety})

URGENCY: Mapping[AlertKind, AlertUrgency] = MappingProxyType(
    {AlertKind.safety: AlertUrgency.urgent, AlertKind.review: AlertUrgency.routine}
)

# domain.md 3.3: "A new positive item 9 while an earlier alert is still open is a new alert, sent
# again to the clinician ... and linked to the open one." Alerts of these kinds are raised for every
# cause, linked to the open ones; other kinds (review) join the open alert of their cause instead.
REPEATING_ALERT_KINDS: frozenset[AlertKind] = frozenset({AlertKind.safety})

# domain.md 2: the `initial` phase is the assessment phase; 3.2: "a finished course ... means at least
# 2 attended treatment sessions", so sessions attended in these phases do not count toward it.
DEFAULT_ASSESSMENT_PHASES: frozenset[str] = frozenset({"initial"})

# domain.md 3.4: the condition-specific measure reported beside the PHQ-9/GAD-7 pair ("pair + EDE-Q
# reliable change reported beside it", "pair + AUDIT change reported beside it"). It never enters the
# pair's classification; a clinic may add measures per condition (settings).
DEFAULT_CONDITION_MEASURES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"eating_disorder": ("edeq6",), "substance_use": ("audit",)})

REASON_RELIABLE_DETERIORATION = "reliable_deterioration"
REASON_NO_RELIABLE_IMPROVEMENT = "no_reliable_improvement"


@dataclass(frozen=True)
class OutcomesPolicy:
    # "No reliable improvement by mid-course (configurable session number)": a session number per
    # template, else this fraction of the contracted sessions, rounded up (16 → 8, 12 → 6, 15 → 8).
    review_session_fraction: float = 0.5
    review_session_by_template: Mapping[str, int] = field(default_factory=dict)
    # NHS Talking Therapies paired measures; an anxiety programme may swap GAD-7 (domain.md 3.2).
    paired_measures_by_condition: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_paired_measures: tuple[str, ...] = DEFAULT_PAIRED_MEASURES
    # Condition-specific measures reported beside the pair (domain.md 3.4); a condition given here
    # replaces its default list.
    condition_measures_by_condition: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_CONDITION_MEASURES))
    # "A finished course for outcome statistics means at least 2 attended treatment sessions."
    finished_course_min_sessions: int = 2
    # Sessions attended in these phases are assessment, not treatment (rapport.session.attended.v1 `phase`).
    assessment_phases: frozenset[str] = DEFAULT_ASSESSMENT_PHASES
    alert_flags: Mapping[str, AlertKind] = field(default_factory=lambda: dict(DEFAULT_ALERT_FLAGS))
    repeating_alert_kinds: frozenset[AlertKind] = REPEATING_ALERT_KINDS
    # A submission dated later than now by more than this is refused (device clocks drift a little).
    max_clock_skew: timedelta = timedelta(minutes=5)
    catalogue: Catalogue = field(default_factory=load_catalogue)
    # domain.md 3.4: what is expected before each session per target condition (the packaged
    # schedule plus a clinic's additions), for the outputs' expected / missing instruments.
    schedule: Schedule = field(default_factory=packaged_schedule)

    def __post_init__(self) -> None:
        if not 0 < self.review_session_fraction <= 1:
            raise ValueError("review_session_fraction must be in (0, 1]")
        if any(n < 1 for n in self.review_session_by_template.values()):
            raise ValueError("review sessions are numbered from 1")
        unknown = set(self.assessment_phases) - {p.value for p in Phase}
        if unknown:
            raise ValueError(f"assessment_phases: unknown phase(s) {sorted(unknown)}")
        if self.finished_course_min_sessions < 0:
            raise ValueError("finished_course_min_sessions must be >= 0")
        for measures in (self.default_paired_measures, *self.paired_measures_by_condition.values()):
            for code in measures:
                if self.catalogue.get(code).caseness is None:  # also refuses unknown codes
                    raise ValueError(f"paired measure {code!r} has no caseness cut-off")
        for condition, measures in self.condition_measures_by_condition.items():
            for code in measures:
                self.catalogue.get(code)  # refuses unknown codes
                if code in self.paired_measures(condition):
                    raise ValueError(f"condition measure {code!r} of {condition!r} is one of its paired measures")

    def review_session(self, template_id: str | None, contracted_sessions: int) -> int:
        if template_id is not None and template_id in self.review_session_by_template:
            return self.review_session_by_template[template_id]
        # Exact arithmetic: 0.3 × 10 must be 3, not 3.0000000000000004 rounded up to 4.
        return max(1, math.ceil(Fraction(repr(self.review_session_fraction)) * contracted_sessions))

    def paired_measures(self, target_condition: str | None) -> tuple[str, ...]:
        if target_condition is not None and target_condition in self.paired_measures_by_condition:
            return tuple(self.paired_measures_by_condition[target_condition])
        return self.default_paired_measures

    def condition_measures(self, target_condition: str | None) -> tuple[str, ...]:
        """The measures reported beside the pair for this target condition (none for depression)."""
        if target_condition is None:
            return ()
        return tuple(self.condition_measures_by_condition.get(target_condition, ()))

    def is_assessment(self, phase: str | None) -> bool:
        return phase is not None and phase in self.assessment_phases

    def is_finished_course(self, treatment_sessions: int) -> bool:
        """``treatment_sessions``: attended sessions less those of the assessment phase(s)."""
        return treatment_sessions >= self.finished_course_min_sessions
