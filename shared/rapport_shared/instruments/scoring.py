"""Pure scoring: validated item answers -> total, band, caseness, subscales, flags.

Answer shape (every instrument): a mapping of questionnaire item number (int) to answer (int),
e.g. ``{1: 0, 2: 3, ..., 9: 1}`` for PHQ-9. Keys are the numbers printed on the questionnaire,
so EDE-Q 6.0 uses 1–12 and 19–28 (its 22 scored items); its unscored behavioural items 13–18
are refused, as is anything missing, extra, out of range or not a plain int.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

from pydantic import BaseModel, ConfigDict

from .catalogue import Catalogue, InstrumentDefinition, compare, load_catalogue


class AnswerError(ValueError):
    """A submission's answers are unacceptable. ``field`` names the answer, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ScoreResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    instrument: str
    total: int | float  # int for summed instruments; the unrounded mean for mean-based ones
    display_total: str  # means shown to 2 decimals (half-up); band/caseness use the exact value
    band: str | None  # band code, None when the instrument has no bands
    caseness: bool | None  # None when the instrument has no caseness cut-off
    subscales: dict[str, float]  # unrounded subscale means (EDE-Q); empty for summed instruments
    flags: tuple[str, ...]  # coded flags, e.g. "safety_item_positive"


def field_name(item_number: int) -> str:
    return f"answers.item_{item_number}"


def validate_answers(definition: InstrumentDefinition, answers: object) -> dict[int, int]:
    """Answers checked against the definition, returned in item order; raises AnswerError."""
    if not isinstance(answers, Mapping):
        raise AnswerError("answers", "must be a mapping of item number to integer answer")
    expected = set(definition.item_numbers)
    for key in answers:
        # bool is an int subclass; True must not pass as item 1.
        if not isinstance(key, int) or isinstance(key, bool):
            raise AnswerError(f"answers[{key!r}]", "item key must be an integer item number")
    for key in sorted(set(answers) - expected):
        raise AnswerError(field_name(key), _extra_reason(definition, key))
    for number in definition.item_numbers:
        if number not in answers:
            raise AnswerError(field_name(number), "missing")
        _check_value(definition, number, answers[number])
    return {number: answers[number] for number in definition.item_numbers}


def _extra_reason(definition: InstrumentDefinition, number: int) -> str:
    unscored = definition.unscored_items
    if unscored is not None and number in unscored.numbers:
        return f"item {number} {unscored.reason}"
    return f"{definition.name} has no item {number}"


def _check_value(definition: InstrumentDefinition, number: int, value: object) -> None:
    item = definition.item(number)
    if isinstance(value, bool):
        raise AnswerError(field_name(number), "must be an integer, not a boolean")
    if not isinstance(value, int):
        raise AnswerError(field_name(number), f"must be an integer, not {type(value).__name__}")
    if not item.allows(value):
        raise AnswerError(field_name(number), f"must be {item.describe_allowed()}, got {value}")


def subscale_means(definition: InstrumentDefinition, values: Mapping[int, int]) -> dict[str, Fraction]:
    # Exact fractions so a global of exactly 2.8 is not lost to float error at the cut-off.
    return {s.code: Fraction(sum(values[n] for n in s.items), len(s.items)) for s in definition.subscales}


def _exact_total(definition: InstrumentDefinition, values: Mapping[int, int]) -> tuple[Fraction, dict[str, Fraction]]:
    if definition.scoring == "sum":
        return Fraction(sum(values.values())), {}
    means = subscale_means(definition, values)
    return sum(means.values(), Fraction(0)) / len(means), means


def round_half_up(value: Fraction, places: int = 2) -> str:
    """Display rounding; half-up (not float/banker's) so 0.125 shows as 0.13."""
    scale = 10**places
    scaled = math.floor(value * scale + Fraction(1, 2))
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), scale)
    return f"{sign}{whole}.{frac:0{places}d}"


def _flags(definition: InstrumentDefinition, values: Mapping[int, int]) -> tuple[str, ...]:
    raised = [f.code for f in definition.flags if compare(values[f.item], f.op, f.value)]
    return tuple(dict.fromkeys(raised))  # de-duplicated, rule order kept


def score(code: str, answers: Mapping[int, int], *, catalogue: Catalogue | None = None) -> ScoreResult:
    """Score one submission. Raises UnknownInstrument or AnswerError."""
    definition = (catalogue if catalogue is not None else load_catalogue()).get(code)
    values = validate_answers(definition, answers)
    total, subscales = _exact_total(definition, values)
    is_sum = definition.scoring == "sum"
    return ScoreResult(
        instrument=definition.code,
        total=int(total) if is_sum else float(total),
        display_total=str(int(total)) if is_sum else round_half_up(total),
        band=definition.band_for(total),
        caseness=definition.is_case(total),
        subscales={code: float(mean) for code, mean in subscales.items()},
        flags=_flags(definition, values),
    )
