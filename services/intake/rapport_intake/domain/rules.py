"""Intake's configurable clinical rules (domain.md 1–3) as data: templates and their age rules,
the exclusion list, the baseline instruments each condition needs, the flags that need a risk
review, and the reasons a referral may be declined by hand. Loaded from ``rules.json`` (or a
clinic's own file); nothing here is a literal in code."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rapport_shared.contracts import TargetCondition
from rapport_shared.contracts.base import Code

DEFAULT_RULES = Path(__file__).parent / "rules.json"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgeRule(_Model):
    """Inclusive bounds in whole years (IPT-A "12–18" admits 12 and 18)."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    def admits(self, age_years: int) -> bool:
        return (self.min is None or age_years >= self.min) and (self.max is None or age_years <= self.max)


class TemplateRule(_Model):
    notes: str = ""
    age: AgeRule | None = None


class Exclusion(_Model):
    code: Code
    applies_to: Literal["all"] | tuple[Code, ...]
    reason_code: Code
    note: str | None = None

    def applies(self, template_id: str) -> bool:
        return self.applies_to == "all" or template_id in self.applies_to


class IntakeRules(_Model):
    templates: dict[Code, TemplateRule] = Field(min_length=1)
    exclusions: tuple[Exclusion, ...] = ()
    age_reason_code: Code
    required_baseline: dict[TargetCondition, tuple[Code, ...]]
    risk_review_flags: tuple[Code, ...]
    crisis_reason_code: Code
    decline_reasons: tuple[Code, ...]

    @model_validator(mode="after")
    def _consistent(self) -> "IntakeRules":
        for e in self.exclusions:
            if e.applies_to != "all":
                unknown = set(e.applies_to) - set(self.templates)
                if unknown:
                    raise ValueError(f"exclusion {e.code!r} names unknown templates {sorted(unknown)}")
        codes = [e.code for e in self.exclusions]
        if len(codes) != len(set(codes)):
            raise ValueError("exclusion codes must be unique")
        missing = set(TargetCondition) - set(self.required_baseline)
        if missing:
            raise ValueError(f"required_baseline has no entry for {sorted(missing)}")
        return self

    def exclusion(self, code: str) -> Exclusion | None:
        return next((e for e in self.exclusions if e.code == code), None)


def rules_from_data(data: dict) -> IntakeRules:
    return IntakeRules.model_validate({k: v for k, v in data.items() if not k.startswith("_")})


@cache
def load_rules(path: str | None = None) -> IntakeRules:
    return rules_from_data(json.loads(Path(path or DEFAULT_RULES).read_text()))
