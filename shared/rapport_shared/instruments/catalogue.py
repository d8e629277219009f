"""Outcome-instrument definitions and the loader for the packaged catalogue.

Instruments are data (one JSON file per instrument under ``data/``, domain.md 3.1) so a clinic
can add a licensed instrument, or configure an SD/reliability, without code. This module only
describes and validates that data; ``scoring`` and ``change`` interpret it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ..contracts.base import TargetCondition

# Strict numbers: a JSON `true` must not pass as 1 in clinical data.
Number = StrictInt | StrictFloat
CodeStr = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
LoincCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,7}-[0-9]$")]
Comparison = Literal["ge", "gt", "le", "lt"]
ScoringRule = Literal["sum", "subscale_mean_of_means"]
# "all" = collected whatever the programme's target condition (e.g. WSAS, functioning).
TargetConditionCode = Literal["all"] | TargetCondition

DATA_PACKAGE = "rapport_shared.instruments"
DATA_DIR = "data"


class UnknownInstrument(LookupError):
    """An instrument code that is not in the catalogue."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"unknown instrument {code!r}")


class CatalogueError(ValueError):
    """The catalogue data itself is invalid (raised at load time, never at scoring time)."""


def exact(value: int | float | Fraction) -> Fraction:
    """Exact rational value; floats go via their shortest repr so 2.8 means 14/5 as written."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(value))


def compare(value: int | float | Fraction, op: Comparison, bound: int | float) -> bool:
    left, right = exact(value), exact(bound)
    if op == "ge":
        return left >= right
    if op == "gt":
        return left > right
    if op == "le":
        return left <= right
    return left < right


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemDefinition(_Model):
    """One scored item: either a contiguous range ``min..max`` or an explicit ``allowed`` set."""

    number: StrictInt = Field(ge=1, description="the item's number on the questionnaire")
    min: StrictInt | None = None
    max: StrictInt | None = None
    allowed: tuple[StrictInt, ...] | None = None
    label: str | None = None
    loinc: LoincCode | None = None

    @model_validator(mode="after")
    def _range_or_set(self) -> ItemDefinition:
        has_range = self.min is not None or self.max is not None
        if has_range == (self.allowed is not None):
            raise ValueError(f"item {self.number}: give either min/max or allowed, not both or neither")
        if has_range:
            if self.min is None or self.max is None or self.min > self.max:
                raise ValueError(f"item {self.number}: needs min <= max")
        else:
            assert self.allowed is not None
            if not self.allowed or list(self.allowed) != sorted(set(self.allowed)):
                raise ValueError(f"item {self.number}: allowed must be non-empty, ascending, unique")
        return self

    @property
    def lowest(self) -> int:
        return self.min if self.allowed is None else self.allowed[0]  # type: ignore[return-value]

    @property
    def highest(self) -> int:
        return self.max if self.allowed is None else self.allowed[-1]  # type: ignore[return-value]

    def allows(self, value: int) -> bool:
        if self.allowed is not None:
            return value in self.allowed
        return self.lowest <= value <= self.highest

    def describe_allowed(self) -> str:
        if self.allowed is not None:
            return "one of " + ", ".join(str(v) for v in self.allowed)
        return f"between {self.lowest} and {self.highest}"


class UnscoredItems(_Model):
    """Questionnaire items that exist but are not scored; submitting them is refused with ``reason``."""

    numbers: tuple[StrictInt, ...]
    reason: str


class Subscale(_Model):
    code: CodeStr
    label: str
    items: tuple[StrictInt, ...] = Field(min_length=1)


class Band(_Model):
    code: CodeStr
    label: str
    lower: Number = Field(description="inclusive lower bound of the band")


class Cutoff(_Model):
    op: Comparison
    value: Number


class FlagRule(_Model):
    """Raises the coded flag ``code`` when item ``item`` compares true (a flag, never a score)."""

    code: CodeStr
    item: StrictInt
    op: Comparison
    value: StrictInt


class TotalRange(_Model):
    min: Number
    max: Number


# How an instrument decides reliable change (domain.md 3.2, 3.4): a fixed number of points
# (PHQ-9, GAD-7: NHS Talking Therapies), Jacobson–Truax from a published SD and reliability, or
# none — no published value for a comparable sample was found, so outputs say "no reliable-change
# criterion" and report the raw difference only.
ReliableChangeCriterion = Literal["jacobson_truax", "threshold", "none"]
NO_RELIABLE_CHANGE_CRITERION = "no reliable-change criterion"


class Citation(_Model):
    """Where one value came from (domain.md 3.4: authors, year, sample, statistic)."""

    statistic: str = Field(description="what the value is, e.g. 'SD of the total at entry'")
    value: Number | None = None
    authors: str = Field(description="as shown in the passage read ('not shown' when it was not)")
    year: StrictInt
    title: str | None = None
    published_in: str
    sample: str
    locator: str | None = Field(default=None, description="table or passage relied on, quoted")
    doi: str | None = None
    url: str | None = None


class ReliableChangeRule(_Model):
    """The reliable-change criterion: a direct ``threshold``, or ``sd`` + ``reliability`` for
    Jacobson–Truax, or none. ``criterion`` names which; left out, it follows from the values (a
    clinic's older data), and when given it must agree with them. The packaged files state it."""

    criterion: ReliableChangeCriterion | None = None
    threshold: Number | None = Field(default=None, gt=0)
    sd: Number | None = Field(default=None, gt=0)
    reliability: Number | None = Field(default=None, ge=0, lt=1)
    source: str | None = None
    citations: tuple[Citation, ...] = ()
    caveats: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ReliableChangeRule:
        if (self.sd is None) != (self.reliability is None):
            raise ValueError("sd and reliability must be given together")
        if self.threshold is not None and self.sd is not None:
            raise ValueError("give either threshold or sd + reliability, not both")
        if self.criterion is not None and self.criterion != self._implied():
            raise ValueError(f"criterion {self.criterion!r} does not match the values given "
                             f"(threshold={self.threshold}, sd={self.sd}, reliability={self.reliability})")
        return self

    def _implied(self) -> ReliableChangeCriterion:
        if self.threshold is not None:
            return "threshold"
        return "jacobson_truax" if self.sd is not None else "none"

    @property
    def kind(self) -> ReliableChangeCriterion:
        """The criterion in force: ``none`` means no reliable change is ever decided."""
        return self.criterion or self._implied()

    @property
    def value(self) -> float | None:
        """The threshold in score points, or None when there is no criterion (never guessed)."""
        if self.threshold is not None:
            return float(self.threshold)
        if self.sd is None or self.reliability is None:
            return None
        return jacobson_truax(self.sd, self.reliability)


def jacobson_truax(sd: float, reliability: float) -> float:
    """Reliable-change threshold 1.96 · SD · √2 · √(1 − r) (domain.md 3.2)."""
    return 1.96 * sd * math.sqrt(2) * math.sqrt(1 - reliability)


class ResponseRule(_Model):
    """Response = a fall from baseline of at least this fraction of the baseline total."""

    min_fall_fraction: Number = Field(gt=0, le=1)


class InstrumentDefinition(_Model):
    code: CodeStr
    name: str
    title: str
    rater: Literal["patient", "clinician"]
    measures: str
    target_conditions: tuple[TargetConditionCode, ...] = Field(min_length=1)
    target_condition_note: str | None = None
    licence: str | None = None
    loinc_total: LoincCode | None = None
    loinc_panel: LoincCode | None = None
    items: tuple[ItemDefinition, ...] = Field(min_length=1)
    unscored_items: UnscoredItems | None = None
    scoring: ScoringRule
    subscales: tuple[Subscale, ...] = ()
    total_range: TotalRange
    bands: tuple[Band, ...] = ()
    caseness: Cutoff | None = None
    reliable_change: ReliableChangeRule = ReliableChangeRule()
    response: ResponseRule | None = None
    remission: Cutoff | None = None
    flags: tuple[FlagRule, ...] = ()
    source: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InstrumentDefinition:
        _check_items(self)
        _check_subscales(self)
        _check_total_range(self)
        _check_bands(self)
        for name in ("caseness", "remission"):
            cutoff = getattr(self, name)
            if cutoff is not None:
                _check_in_range(self, cutoff.value, name)
        for flag in self.flags:
            if flag.item not in self.item_numbers:
                raise ValueError(f"flag {flag.code!r} refers to unknown item {flag.item}")
        return self

    @property
    def item_numbers(self) -> tuple[int, ...]:
        return tuple(item.number for item in self.items)

    def item(self, number: int) -> ItemDefinition:
        for item in self.items:
            if item.number == number:
                return item
        raise KeyError(number)

    @property
    def reliable_change_threshold(self) -> float | None:
        return self.reliable_change.value

    @property
    def reliable_change_criterion(self) -> ReliableChangeCriterion:
        return self.reliable_change.kind

    def band_for(self, total: int | float | Fraction) -> str | None:
        """Code of the highest band whose lower bound the total reaches; None if no bands."""
        found = None
        for band in self.bands:  # validated ascending
            if exact(total) >= exact(band.lower):
                found = band.code
        return found

    def is_case(self, total: int | float | Fraction) -> bool | None:
        """Caseness at this total, or None when the instrument defines no cut-off."""
        if self.caseness is None:
            return None
        return compare(total, self.caseness.op, self.caseness.value)


def _check_items(d: InstrumentDefinition) -> None:
    numbers = d.item_numbers
    if list(numbers) != sorted(set(numbers)):
        raise ValueError("item numbers must be unique and ascending")
    if d.unscored_items is not None and set(d.unscored_items.numbers) & set(numbers):
        raise ValueError("an item cannot be both scored and unscored")


def _check_subscales(d: InstrumentDefinition) -> None:
    if d.scoring == "sum":
        if d.subscales:
            raise ValueError("subscales are only defined for subscale_mean_of_means scoring")
        return
    if not d.subscales:
        raise ValueError("subscale_mean_of_means scoring needs subscales")
    if len({s.code for s in d.subscales}) != len(d.subscales):
        raise ValueError("subscale codes must be unique")
    covered: set[int] = set()
    for subscale in d.subscales:
        unknown = set(subscale.items) - set(d.item_numbers)
        if unknown or len(set(subscale.items)) != len(subscale.items):
            raise ValueError(f"subscale {subscale.code!r}: unknown or repeated items")
        covered |= set(subscale.items)
    if covered != set(d.item_numbers):
        # A scored item outside every subscale would be collected but never count.
        raise ValueError(f"items {sorted(set(d.item_numbers) - covered)} are in no subscale")


def possible_total_range(d: InstrumentDefinition) -> tuple[Fraction, Fraction]:
    """The totals the scoring rule can produce, derived from the item definitions."""
    if d.scoring == "sum":
        return (
            Fraction(sum(i.lowest for i in d.items)),
            Fraction(sum(i.highest for i in d.items)),
        )

    def mean_of_means(pick: str) -> Fraction:
        means = [
            Fraction(sum(getattr(d.item(n), pick) for n in s.items), len(s.items)) for s in d.subscales
        ]
        return sum(means, Fraction(0)) / len(means)

    return mean_of_means("lowest"), mean_of_means("highest")


def _check_total_range(d: InstrumentDefinition) -> None:
    # The declared range is a cross-check of the item data against the published total range.
    low, high = possible_total_range(d)
    if (exact(d.total_range.min), exact(d.total_range.max)) != (low, high):
        raise ValueError(
            f"total_range {d.total_range.min}..{d.total_range.max} does not match the items ({low}..{high})"
        )


def _check_in_range(d: InstrumentDefinition, value: int | float, what: str) -> None:
    if not exact(d.total_range.min) <= exact(value) <= exact(d.total_range.max):
        raise ValueError(f"{what} value {value} is outside the total range")


def _check_bands(d: InstrumentDefinition) -> None:
    if not d.bands:
        return
    lowers = [exact(b.lower) for b in d.bands]
    if lowers != sorted(set(lowers)):
        raise ValueError("band lower bounds must be strictly ascending")
    if lowers[0] != exact(d.total_range.min):
        raise ValueError("the first band must start at the minimum total")
    if len({b.code for b in d.bands}) != len(d.bands):
        raise ValueError("band codes must be unique")
    _check_in_range(d, d.bands[-1].lower, "band lower bound")


class Catalogue:
    """An immutable set of instrument definitions, looked up by code."""

    __slots__ = ("_by_code",)

    def __init__(self, definitions: Iterable[InstrumentDefinition]) -> None:
        by_code: dict[str, InstrumentDefinition] = {}
        for definition in definitions:
            if definition.code in by_code:
                raise CatalogueError(f"duplicate instrument code {definition.code!r}")
            by_code[definition.code] = definition
        self._by_code: Mapping[str, InstrumentDefinition] = MappingProxyType(by_code)

    @classmethod
    def from_data(cls, data: Iterable[Mapping[str, Any]]) -> Catalogue:
        """Build from plain data (e.g. parsed JSON), validating each definition."""
        definitions = []
        for entry in data:
            try:
                definitions.append(InstrumentDefinition.model_validate(entry))
            except ValidationError as exc:
                raise CatalogueError(f"instrument {entry.get('code')!r}: {exc}") from exc
        return cls(definitions)

    def get(self, code: str) -> InstrumentDefinition:
        try:
            return self._by_code[code]
        except (KeyError, TypeError):
            raise UnknownInstrument(code) from None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[InstrumentDefinition]:
        return iter(self._by_code.values())

    def __len__(self) -> int:
        return len(self._by_code)


@cache
def load_catalogue() -> Catalogue:
    """The packaged catalogue: every ``data/*.json``, validated once and cached."""
    definitions = []
    data_dir = resources.files(DATA_PACKAGE) / DATA_DIR
    for entry in sorted(data_dir.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        try:
            definition = InstrumentDefinition.model_validate_json(entry.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise CatalogueError(f"{entry.name}: {exc}") from exc
        # File name = code keeps "one instrument, one file" unambiguous when adding data.
        if entry.name != f"{definition.code}.json":
            raise CatalogueError(f"{entry.name}: file name must be {definition.code}.json")
        definitions.append(definition)
    return Catalogue(definitions)
