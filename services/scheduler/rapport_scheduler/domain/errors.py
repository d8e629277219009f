"""What the domain refuses, and why. The HTTP layer turns these into 404 / 422 / 409 answers
naming the field (and, for an illegal transition, the current phase and the rule)."""

from __future__ import annotations


class SchedulerError(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownEntity(SchedulerError):
    """No such course or session (404)."""


class InvalidInput(SchedulerError):
    """The request itself is wrong: a value outside its bounds, in the past, outside availability (422)."""


class SlotTaken(SchedulerError):
    """The calendar clashes: the clinician already has a session then (409)."""


class RuleViolation(SchedulerError):
    """An operation the course's current phase or state does not allow (409). Nothing changes."""

    def __init__(self, message: str, *, phase: str, rule: str, field: str | None = None) -> None:
        super().__init__(f"course is in phase {phase}: {message}", field=field)
        self.phase = phase
        self.rule = rule
