"""Pure change classification of paired (baseline, latest) totals — domain.md 3.2.

NHS Talking Therapies definitions; every threshold comes from the catalogue. Where a value
cannot be determined (the instrument has no reliable-change criterion, a measure was not
collected) the answer is None, never a guess; ``InstrumentChange.criterion`` then says "none",
so a caller can say "no reliable-change criterion" rather than leave a bare null. Higher totals
are worse on every catalogued instrument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .catalogue import (
    Catalogue,
    InstrumentDefinition,
    ReliableChangeCriterion,
    compare,
    exact,
    load_catalogue,
)

ReliableChangeOutcome = Literal["improved", "deteriorated", "no_reliable_change"]

# The NHS Talking Therapies paired measures; a programme may swap GAD-7 for a
# disorder-specific measure (domain.md 3.2, configurable) by passing its own tuple.
DEFAULT_PAIRED_MEASURES: tuple[str, ...] = ("phq9", "gad7")
# Response/remission are defined on PHQ-9 (domain.md 3.2); their rules live in its data.
DEFAULT_TRIAL_MEASURE = "phq9"


class TotalError(ValueError):
    """A total given for classification is unacceptable. ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InstrumentChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    instrument: str
    baseline: int | float
    latest: int | float
    change: int | float  # latest − baseline; negative is a fall (improvement)
    threshold: float | None  # reliable-change threshold; None = no criterion
    criterion: ReliableChangeCriterion  # "none": no reliable change is decided, raw difference only
    reliable_change: ReliableChangeOutcome | None
    caseness_at_baseline: bool | None  # None when the instrument has no cut-off
    caseness_at_end: bool | None


class EpisodeClassification(BaseModel):
    model_config = ConfigDict(frozen=True)

    instruments: dict[str, InstrumentChange]
    paired_measures: tuple[str, ...]  # the configured paired measures actually present
    caseness_at_baseline: bool | None  # any paired measure at caseness; None if none collected
    caseness_at_end: bool | None
    counts_toward_recovery: bool  # only episodes at caseness at baseline count
    recovery: bool | None  # None when the episode does not count toward recovery
    reliable_improvement: bool | None
    reliable_deterioration: bool | None
    reliable_recovery: bool | None
    response: bool | None  # None without a PHQ-9 pair, or with a baseline of 0
    remission: bool | None


def _catalogue(catalogue: Catalogue | None) -> Catalogue:
    return catalogue if catalogue is not None else load_catalogue()


def checked_total(definition: InstrumentDefinition, value: object, field: str) -> int | float:
    """A total the instrument can produce; raises TotalError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TotalError(field, f"must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TotalError(field, "must be finite")
    if definition.scoring == "sum" and not isinstance(value, int):
        raise TotalError(field, f"must be an integer total for {definition.name}")
    low, high = definition.total_range.min, definition.total_range.max
    if not exact(low) <= exact(value) <= exact(high):
        raise TotalError(field, f"must be between {low} and {high}, got {value}")
    return value


def _outcome(threshold: float | None, baseline: int | float, latest: int | float) -> ReliableChangeOutcome | None:
    if threshold is None:
        return None
    rise = exact(latest) - exact(baseline)
    # "At least the threshold": a change exactly at the threshold is reliable.
    if -rise >= exact(threshold):
        return "improved"
    if rise >= exact(threshold):
        return "deteriorated"
    return "no_reliable_change"


def reliable_change(
    code: str, baseline: int | float, latest: int | float, *, catalogue: Catalogue | None = None
) -> ReliableChangeOutcome | None:
    """Per-instrument reliable change; None when the instrument has no determinable threshold."""
    return classify_instrument(code, baseline, latest, catalogue=catalogue).reliable_change


def classify_instrument(
    code: str,
    baseline: int | float,
    latest: int | float,
    *,
    catalogue: Catalogue | None = None,
    field_prefix: str = "",
) -> InstrumentChange:
    """One instrument's paired totals: change, reliable change and caseness at both ends."""
    definition = _catalogue(catalogue).get(code)
    baseline = checked_total(definition, baseline, f"{field_prefix}baseline")
    latest = checked_total(definition, latest, f"{field_prefix}latest")
    difference = exact(latest) - exact(baseline)
    threshold = definition.reliable_change_threshold
    return InstrumentChange(
        instrument=definition.code,
        baseline=baseline,
        latest=latest,
        change=int(difference) if definition.scoring == "sum" else float(difference),
        threshold=threshold,
        criterion=definition.reliable_change_criterion,
        reliable_change=_outcome(threshold, baseline, latest),
        caseness_at_baseline=definition.is_case(baseline),
        caseness_at_end=definition.is_case(latest),
    )


# Three-valued (Kleene) logic: None = not determinable, and it only decides when it must.
def _any(values: Iterable[bool | None]) -> bool | None:
    values = list(values)
    if True in values:
        return True
    return None if None in values else False


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _and(*values: bool | None) -> bool | None:
    if False in values:
        return False
    return None if None in values else True


def _is(outcome: ReliableChangeOutcome | None, wanted: ReliableChangeOutcome) -> bool | None:
    return None if outcome is None else outcome == wanted


def response(definition: InstrumentDefinition, baseline: int | float, latest: int | float) -> bool | None:
    """Fall of at least the rule's fraction of baseline; None for baseline 0 (no fall is possible)."""
    if definition.response is None or exact(baseline) == 0:
        return None
    fall = exact(baseline) - exact(latest)
    return fall >= exact(definition.response.min_fall_fraction) * exact(baseline)


def _pairs(pairs: object) -> Mapping[str, Sequence[int | float]]:
    if not isinstance(pairs, Mapping):
        raise TotalError("pairs", "must be a mapping of instrument code to (baseline, latest)")
    for code, pair in pairs.items():
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TotalError(f"pairs[{code!r}]", "must be a (baseline, latest) pair")
    return pairs


def _check_paired_measures(catalogue: Catalogue, paired_measures: Sequence[str]) -> None:
    for code in paired_measures:
        if catalogue.get(code).caseness is None:
            raise ValueError(f"paired measure {code!r} has no caseness cut-off in the catalogue")


def classify_episode(
    pairs: Mapping[str, tuple[int | float, int | float]],
    *,
    paired_measures: Sequence[str] = DEFAULT_PAIRED_MEASURES,
    trial_measure: str = DEFAULT_TRIAL_MEASURE,
    catalogue: Catalogue | None = None,
) -> EpisodeClassification:
    """Classify an episode from each instrument's (baseline, latest) totals.

    Caseness, recovery and reliable improvement/deterioration use the paired measures that are
    present; response and remission use the trial measure (PHQ-9) and its data rules.
    """
    cat = _catalogue(catalogue)
    _check_paired_measures(cat, paired_measures)
    trial = cat.get(trial_measure)
    changes = {
        code: classify_instrument(code, pair[0], pair[1], catalogue=cat, field_prefix=f"pairs[{code!r}].")
        for code, pair in _pairs(pairs).items()
    }
    present = tuple(code for code in dict.fromkeys(paired_measures) if code in changes)
    paired = [changes[code] for code in present]

    # No paired measure collected: nothing at episode level is determinable.
    caseness_at_baseline = _any(c.caseness_at_baseline for c in paired) if paired else None
    caseness_at_end = _any(c.caseness_at_end for c in paired) if paired else None
    counts = caseness_at_baseline is True
    deterioration = _any(_is(c.reliable_change, "deteriorated") for c in paired) if paired else None
    # Improvement on at least one paired measure and reliable deterioration on none.
    improved_any = _any(_is(c.reliable_change, "improved") for c in paired)
    improvement = _and(improved_any, _not(deterioration)) if paired else None
    # Recovery: at caseness at baseline, not at caseness at the end on any paired measure.
    recovery = _not(caseness_at_end) if counts else None

    trial_change = changes.get(trial.code)
    return EpisodeClassification(
        instruments=changes,
        paired_measures=present,
        caseness_at_baseline=caseness_at_baseline,
        caseness_at_end=caseness_at_end,
        counts_toward_recovery=counts,
        recovery=recovery,
        reliable_improvement=improvement,
        reliable_deterioration=deterioration,
        reliable_recovery=_and(improvement, recovery) if counts else None,
        response=None if trial_change is None else response(trial, trial_change.baseline, trial_change.latest),
        remission=None
        if trial_change is None or trial.remission is None
        else compare(trial_change.latest, trial.remission.op, trial.remission.value),
    )


__all__ = [
    "DEFAULT_PAIRED_MEASURES",
    "DEFAULT_TRIAL_MEASURE",
    "EpisodeClassification",
    "InstrumentChange",
    "ReliableChangeOutcome",
    "TotalError",
    "checked_total",
    "classify_episode",
    "classify_instrument",
    "reliable_change",
    "response",
]
