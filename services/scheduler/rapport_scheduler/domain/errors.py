"""What the scheduler refuses, and why: the shared vocabulary (``rapport_shared.errors``) under
the scheduler's own names. The one shared table (``rapport_shared.http.errors``) answers them
404 / 422 / 409 naming the field and, for an illegal transition, the current phase and the rule;
each class fixes the ``error`` code its answer has always carried."""

from __future__ import annotations

from rapport_shared.errors import Conflict, DomainError, Invalid, NotFound


class SchedulerError(DomainError):
    code_name: str | None = None  # the answer's ``error`` (None: the class name)

    def __init__(self, message: str, *, field: str | None = None, **extra: object) -> None:
        super().__init__(message, field=field, code=self.code_name, **extra)


class UnknownEntity(SchedulerError, NotFound):
    """No such course or session (404)."""

    code_name = "NotFound"


class InvalidInput(SchedulerError, Invalid):
    """The request itself is wrong: a value outside its bounds, in the past, outside availability (422)."""

    code_name = "Invalid"


class SlotTaken(SchedulerError, Conflict):
    """The calendar clashes: the clinician already has a session then (409)."""

    code_name = "slot_taken"


class RuleViolation(SchedulerError, Conflict):
    """An operation the course's current phase or state does not allow (409). Nothing changes."""

    code_name = "illegal_transition"

    def __init__(self, message: str, *, phase: str, rule: str, field: str | None = None) -> None:
        super().__init__(f"course is in phase {phase}: {message}", field=field, phase=phase, rule=rule)
        self.phase = phase
        self.rule = rule
