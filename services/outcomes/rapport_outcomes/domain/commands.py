"""What callers ask outcomes for: the request bodies validated at the edge (HTTP), and the
commands the edge builds from them with the record's id and the caller (the actor), which the
message bus hands to one handler each (service_layer/handlers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rapport_shared.contracts.base import ClientKey, Code
from rapport_shared.contracts.outcomes import AlertAction, Timepoint
from rapport_shared.inputs import Integer, Timestamp, known


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubmitScores(Command):
    client_submission_id: ClientKey = Field(
        description="the caller's id for this submission: sending it again stores nothing new (idempotency key)"
    )
    instrument: Annotated[Code, known("instruments")] = Field(description="instrument code in the catalogue, e.g. phq9")
    # Values are checked by the catalogue (strict ints, ranges), so they stay untyped here and a
    # refusal names the item ("answers.item_9"), not a pydantic location. The document says what
    # the catalogue takes: item numbers as written by parse_answers, integer answers.
    answers: dict[str, Any] = Field(description='questionnaire item number → integer answer, e.g. {"1": 0, ..., "9": 1}',
                                    json_schema_extra={"propertyNames": {"pattern": "^[1-9][0-9]{0,3}$"},
                                                       "additionalProperties": {"type": "integer"}})
    administered_at: Timestamp = Field(description="when the questionnaire was answered (RFC 3339 with offset)")
    timepoint: Timepoint | None = Field(
        default=None, description="session (default) or end; the first score of an instrument is always its baseline"
    )
    session_number: Integer | None = Field(default=None, ge=1, le=1000,
                                           description="the course session it was collected before")

    @field_validator("answers")
    @classmethod
    def _json_integers(cls, answers: dict[str, Any]) -> dict[str, Any]:
        # 3.0 is the integer 3 in JSON (and in the document); anything else stays for the catalogue.
        return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in answers.items()}


class ResolveAlert(Command):
    action: AlertAction
    action_text: Annotated[str, StringConstraints(max_length=2000)] | None = Field(
        default=None, description="what was done (required for 'other'); stays in outcomes, never on a topic"
    )
    resolved_at: Timestamp | None = Field(default=None, description="when it was done; defaults to now")


@dataclass(frozen=True)
class Actor:
    """Who asks: the token's subject and roles (the access policy already admitted them)."""

    sub: str
    roles: frozenset[str]


@dataclass(frozen=True)
class SubmitQuestionnaire:
    """A questionnaire for an episode: validate strictly, score, store once, announce."""

    episode_id: UUID
    actor: Actor
    scores: SubmitScores


@dataclass(frozen=True)
class RecordResolution:
    """A clinician records what was done about an open alert."""

    alert_id: UUID
    actor: Actor
    resolution: ResolveAlert
