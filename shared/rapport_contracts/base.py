"""Building blocks of the event contracts.

Rules for everything on a shared topic (architecture.md, "Privacy"): pseudonymous ids and coded
facts only — no names, dates of birth, contact details or free text. Identifier fields are
constrained so that an e-mail address or a name with spaces cannot pass validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from . import pseudonyms

# The JSON Schema of a pseudonymous id, as published (the pattern is unchanged since v1: tightening
# it would be a breaking change for records already on the topics) with the runtime rule described.
_ID_SCHEMA = {
    "type": "string",
    "pattern": pseudonyms.PATTERN,
    "description": "pseudonymous id: an opaque prefix, '-' or '_', then random or keyed-hash characters "
                   "(e.g. P-k7qm2x4avd3fj6ta). Runtime rule beyond the pattern: Rapport's HTTP APIs refuse "
                   "(422) an id that looks like a phone number, an e-mail address, a date, a national id "
                   "or a medical record number (docs/privacy.md)",
}

# An id as records hold it: the published pattern only (no '@', '+' or spaces, so an e-mail, a
# +44 phone number or a "First Last" name never passes). Event contracts, the private contacts
# record and look-ups of existing records use it: a reader must accept every record already
# written, including ids recorded before the stricter format below was enforced.
PseudonymousId = Annotated[str, StringConstraints(pattern=pseudonyms.PATTERN), WithJsonSchema(_ID_SCHEMA)]
# A new id entering Rapport (HTTP edge: a referral's person, an assigned clinician, a care team
# member, the token's organisation): the pattern plus ``pseudonyms.problem`` — refused when it looks
# like a phone number, an e-mail address, a date, a national or medical record number. The error
# names the reason, never the value. Same JSON Schema as ``PseudonymousId``.
StrictPseudonymousId = Annotated[str, AfterValidator(pseudonyms.check), WithJsonSchema(_ID_SCHEMA)]
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


class EpisodeEventData(EventData):
    """Base of the events about one episode on ``rapport.course``, ``rapport.outcomes`` and
    ``rapport.notifications``: the episode (the record key) and the organisation it belongs to.

    ``organisation_id`` is set by the producing service from the organisation it recorded for the
    episode (from ``rapport.intake.completed.v1``, else its ``RAPPORT_DEFAULT_ORGANISATION``), so
    a partner can filter a topic and every consumer can scope what it stores without asking
    another service. Subclasses still list ``episode_id`` first; it keeps its place."""

    episode_id: UUID
    # Added in v1 as an optional field (older consumers ignore it; older records lack it).
    organisation_id: PseudonymousId | None = Field(
        default=None, description="the organisation the episode belongs to (pseudonymous code; scopes who may see "
                                  "its records), as the producing service recorded it from the intake. Optional in "
                                  "v1 for older producers and for episodes of no organisation; Rapport sets it "
                                  "whenever it knows the episode's organisation")

    def with_organisation(self, organisation_id: str | None) -> Self:
        """This event naming ``organisation_id`` (validated like any field: an invalid code raises).
        Unchanged when it names one already or ``organisation_id`` is None (the episode has none)."""
        if organisation_id is None or self.organisation_id is not None:
            return self
        return self.model_validate({**self.model_dump(), "organisation_id": organisation_id})
