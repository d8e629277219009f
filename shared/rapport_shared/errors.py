"""What a domain refuses, in words the domain knows: no HTTP here.

Every service raises these (or subclasses) from its domain and service layer; the HTTP edge maps
them to status codes in one table (``rapport_shared.http.errors``), so a domain module never
imports FastAPI and an error means the same thing in every service.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain will not carry out. ``field`` names the offending input (dotted
    path), ``code`` a stable machine-readable name; ``extra`` is added to the error body."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or type(self).__name__
        self.extra = extra


class NotFound(DomainError):
    """No such record, or none the caller may see (the two answer alike)."""


class Conflict(DomainError):
    """The record's current state does not allow this (a phase rule, a clash, a duplicate)."""


class Invalid(DomainError):
    """The input itself is wrong: a value outside its bounds, in the past, of the wrong kind."""


class Forbidden(DomainError):
    """The caller is known and may see the record, but may not do this to it."""
