"""Measurement per programme (domain.md §3.4): which instruments are asked before which session,
per target condition, as data (``schedule.yaml``) with additive clinic overrides. See ``schedule``
and docs/instruments.md, "Measurement per programme"."""

from .schedule import (
    ALL,
    OVERRIDES_ENV,
    TIMEPOINTS,
    Due,
    RiskScreenError,
    Rule,
    Schedule,
    ScheduleError,
    expected_instruments,
    load_schedule,
    missing_instruments,
    packaged_schedule,
    read_file,
    session_of,
)

__all__ = [
    "ALL",
    "OVERRIDES_ENV",
    "TIMEPOINTS",
    "Due",
    "RiskScreenError",
    "Rule",
    "Schedule",
    "ScheduleError",
    "expected_instruments",
    "load_schedule",
    "missing_instruments",
    "packaged_schedule",
    "read_file",
    "session_of",
]
