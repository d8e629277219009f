"""Building blocks of the event contracts.

Rules for everything on a shared topic (architecture.md, "Privacy"): pseudonymous ids and coded
facts only — no names, dates of birth, contact details or free text. Identifier fields are
constrained so that an e-mail address or a name with spaces cannot pass validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints

# Opaque pseudonymous id: no '@', '+', spaces — an e-mail, phone number in +44 form or a
# "First Last" name is rejected by the pattern.
PseudonymousId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# A caller's idempotency key (HTTP only, never on a topic): opaque, no spaces, so it is not a
# place for patient text.
ClientKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class ProblemArea(StrEnum):
    grief = "grief"
    role_dispute = "role_dispute"
    role_transition = "role_transition"
    interpersonal_deficits = "interpersonal_deficits"


class TargetCondition(StrEnum):
    depression = "depression"
    eating_disorder = "eating_disorder"
    anxiety = "anxiety"
    substance_use = "substance_use"


class Phase(StrEnum):
    initial = "initial"
    middle = "middle"
    termination = "termination"
    completed = "completed"
    maintenance = "maintenance"
    ended_early = "ended_early"


class EventData(BaseModel):
    """Base of every event's ``data``. Subclasses set the CloudEvents type and topic."""

    # Tolerant reader: consumers ignore fields added later by a compatible producer.
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
