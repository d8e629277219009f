"""The FHIR export against FHIR models (fhir.resources, R4B: the same Bundle, QuestionnaireResponse
and Observation structure as R4), for a submission of every instrument in the catalogue.

fhir.resources checks structure: every element known, of its type, cardinality, required elements
present. It does not check the required value-set bindings, so the codes this export uses for those
(FHIR R4 spec values) are checked here too.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from rapport_outcomes.domain import fhir
from rapport_shared.instruments import load_catalogue, score

pytestmark = pytest.mark.unit

T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
MODELS = {"Observation": Observation, "QuestionnaireResponse": QuestionnaireResponse}
# Required bindings (FHIR R4): Observation.status, QuestionnaireResponse.status, Bundle.type.
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
                      "unknown"}
RESPONSE_STATUS = {"in-progress", "completed", "amended", "entered-in-error", "stopped"}
BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
                "searchset", "collection"}


def submissions() -> list[fhir.ExportedSubmission]:
    """One submission per catalogue instrument, each item at its highest allowed answer."""
    out = []
    for definition in load_catalogue():
        answers = {item.number: item.highest for item in definition.items}
        scored = score(definition.code, answers)
        out.append(fhir.ExportedSubmission(uuid.uuid4(), definition.code, answers, scored.total, scored.band,
                                           scored.subscales, T, T, session_number=3))
    return out


def test_every_instrument_exports_as_valid_fhir():
    subs = submissions()
    assert len(subs) == len(load_catalogue()) >= 5
    bundle = fhir.episode_bundle(episode_id=uuid.uuid4(), person_id="P-7f3a9c", submissions=subs,
                                 catalogue=load_catalogue(), generated_at=T)
    Bundle.model_validate(bundle)
    assert bundle["type"] in BUNDLE_TYPES
    kinds = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)  # raises, naming the element, if invalid
        kinds.append(resource["resourceType"])
        if resource["resourceType"] == "Observation":
            assert resource["status"] in OBSERVATION_STATUS
        else:
            assert resource["status"] in RESPONSE_STATUS
    assert kinds.count("Observation") == kinds.count("QuestionnaireResponse") == len(subs)


def test_the_validation_catches_a_broken_resource():
    """The check above can fail: a resource with an unknown element or a wrong type is refused."""
    bundle = fhir.episode_bundle(episode_id=uuid.uuid4(), person_id="P-1", submissions=submissions()[:1],
                                 catalogue=load_catalogue(), generated_at=T)
    observation = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    with pytest.raises(ValueError, match="notAnElement"):
        Observation.model_validate({**observation, "notAnElement": 1})
    with pytest.raises(ValueError, match="effectiveDateTime"):
        Observation.model_validate({**observation, "effectiveDateTime": "last tuesday"})
