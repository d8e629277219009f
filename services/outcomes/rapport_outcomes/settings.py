from datetime import timedelta

from pydantic import Field, PrivateAttr, field_validator

from rapport_shared.programmes import ScheduleError, load_schedule
from rapport_shared.settings import ServiceSettings

from .domain.policy import DEFAULT_CONDITION_MEASURES, OutcomesPolicy


class OutcomesSettings(ServiceSettings):
    service_name: str = "outcomes"
    http_port: int = 8083

    # domain.md 3.3 "no reliable improvement by mid-course (configurable session number)":
    # RAPPORT_REVIEW_SESSION_BY_TEMPLATE='{"ipt-brief": 4}' fixes it per template; otherwise
    # the session at this fraction of the contracted sessions (rounded up).
    review_session_fraction: float = Field(default=0.5, gt=0, le=1)
    review_session_by_template: dict[str, int] = Field(default_factory=dict)
    # domain.md 3.2: an anxiety programme may replace GAD-7 by a disorder-specific measure,
    # e.g. RAPPORT_PAIRED_MEASURES_BY_CONDITION='{"anxiety": ["phq9", "<code>"]}'.
    paired_measures_by_condition: dict[str, list[str]] = Field(default_factory=dict)
    # domain.md 3.4: the condition-specific measures reported beside the pair (defaults: eating_disorder
    # → edeq6, substance_use → audit); a condition given here replaces its default list, e.g.
    # RAPPORT_CONDITION_MEASURES_BY_CONDITION='{"anxiety": ["<code>"]}'.
    condition_measures_by_condition: dict[str, list[str]] = Field(default_factory=dict)
    finished_course_min_sessions: int = Field(default=2, ge=0)
    # domain.md 2/3.2: sessions of the initial (assessment) phase are not treatment sessions.
    finished_course_assessment_phases: list[str] = Field(default_factory=lambda: ["initial"])
    submission_max_clock_skew_s: int = Field(default=300, ge=0)
    # domain.md 3.4: a clinic's additions to the measurement schedule (the same file as the
    # notifier's, RAPPORT_MEASUREMENT_OVERRIDES; additive only), so the outputs' expected / missing
    # instruments are what the patient was asked for. Unset: the packaged schedule.
    measurement_overrides: str = ""

    @field_validator("measurement_overrides")
    @classmethod
    def _measurement_overrides(cls, v: str) -> str:
        v = v.strip()
        if v:
            try:
                load_schedule(v)  # cached: the policy uses the same one
            except ScheduleError as exc:
                raise ValueError(f"RAPPORT_MEASUREMENT_OVERRIDES refused: {exc}") from None
        return v

    _policy: tuple[str, OutcomesPolicy] | None = PrivateAttr(default=None)

    def policy(self) -> OutcomesPolicy:
        """The rules these settings configure, built once (building loads the catalogue); keyed by
        the values it is built from, so a copy with other values never reuses it."""
        key = self.model_dump_json(include=_POLICY_FIELDS)
        if self._policy is None or self._policy[0] != key:
            self._policy = (key, self._build_policy())
        return self._policy[1]

    def _build_policy(self) -> OutcomesPolicy:
        return OutcomesPolicy(
            review_session_fraction=self.review_session_fraction,
            review_session_by_template=dict(self.review_session_by_template),
            paired_measures_by_condition={k: tuple(v) for k, v in self.paired_measures_by_condition.items()},
            condition_measures_by_condition={**DEFAULT_CONDITION_MEASURES,
                                             **{k: tuple(v) for k, v in self.condition_measures_by_condition.items()}},
            finished_course_min_sessions=self.finished_course_min_sessions,
            assessment_phases=frozenset(self.finished_course_assessment_phases),
            max_clock_skew=timedelta(seconds=self.submission_max_clock_skew_s),
            schedule=load_schedule(self.measurement_overrides or None),
        )


_POLICY_FIELDS = {"review_session_fraction", "review_session_by_template", "paired_measures_by_condition",
                  "condition_measures_by_condition",
                  "finished_course_min_sessions", "finished_course_assessment_phases", "submission_max_clock_skew_s",
                  "measurement_overrides"}


def load() -> OutcomesSettings:
    return OutcomesSettings()
