"""FHIR R4 export of an episode's results (domain.md 5): a ``collection`` Bundle holding one
QuestionnaireResponse per submission and one Observation per total (category ``survey``, the
LOINC code where the catalogue has one, ``derivedFrom`` its QuestionnaireResponse).

Entries are addressed by ``urn:uuid:`` full URLs so references resolve inside the Bundle
without a FHIR server. Only pseudonymous ids appear (the person as an identifier, never a name).

``answers=False`` is the partner's minimal view (architecture.md "Who may see what": coded facts,
never answers): the Observations only (total, band, subscales: what rapport.score.submitted.v1
tells a partner anyway), no QuestionnaireResponse and so no item answers (PHQ-9 item 9 included),
and no ``derivedFrom`` pointing at a resource the Bundle does not hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping
from uuid import UUID

from rapport_shared.instruments import Catalogue, InstrumentDefinition

LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM = "http://unitsofmeasure.org"
# Local code systems for what has no standard code (instruments without LOINC, bands, ids).
LOCAL = "urn:rapport:fhir"


@dataclass(frozen=True)
class ExportedSubmission:
    submission_id: UUID
    instrument: str
    answers: Mapping[int, int]
    total: int | float
    band: str | None
    subscales: Mapping[str, float]
    administered_at: datetime
    scored_at: datetime
    session_number: int | None = None


def instant(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def observation_id(submission_id: UUID) -> UUID:
    """The id of a submission's total Observation."""
    # Stable across exports, so a partner re-importing gets the same resource ids.
    return uuid.uuid5(submission_id, "observation.total")


def subject(person_id: str) -> dict:
    """The person as a logical reference: the pseudonymous id only (no Patient resource, no name)."""
    return {"identifier": {"system": f"{LOCAL}/person", "value": person_id}}


def questionnaire_response(s: ExportedSubmission, person_id: str, episode_id: UUID, catalogue: Catalogue) -> dict:
    d = catalogue.get(s.instrument)
    labels = {i.number: i.label for i in d.items}
    questionnaire = f"{LOINC}/q/{d.loinc_panel}" if d.loinc_panel else f"{LOCAL}/Questionnaire/{d.code}"
    items = []
    for number in sorted(s.answers):
        item: dict = {"linkId": str(number), "answer": [{"valueInteger": s.answers[number]}]}
        if labels.get(number):
            item["text"] = labels[number]
        items.append(item)
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": str(s.submission_id),
        "identifier": {"system": f"{LOCAL}/submission", "value": str(s.submission_id)},
        "questionnaire": questionnaire,
        "status": "completed",
        "subject": subject(person_id),
        "authored": instant(s.administered_at),
        "item": items,
        "extension": [{"url": f"{LOCAL}/StructureDefinition/episode", "valueIdentifier":
                       {"system": f"{LOCAL}/episode", "value": str(episode_id)}}],
    }
    if d.rater == "patient":
        resource["source"] = subject(person_id)
    return resource


def total_code(d: InstrumentDefinition) -> dict:
    """The code of an instrument's total: LOINC where the catalogue has one, else a local code."""
    if d.loinc_total:
        code = {"coding": [{"system": LOINC, "code": d.loinc_total, "display": f"{d.name} total score"}]}
    else:
        code = {"coding": [{"system": f"{LOCAL}/instrument", "code": f"{d.code}-total", "display": f"{d.name} total score"}]}
    code["text"] = f"{d.name} total score"
    return code


def observation(s: ExportedSubmission, person_id: str, catalogue: Catalogue, *, derived_from: bool = True) -> dict:
    d = catalogue.get(s.instrument)
    code = total_code(d)
    resource: dict = {
        "resourceType": "Observation",
        "id": str(observation_id(s.submission_id)),
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": code,
        "subject": subject(person_id),
        "effectiveDateTime": instant(s.administered_at),
        "issued": instant(s.scored_at),
    }
    if derived_from:
        resource["derivedFrom"] = [{"reference": f"urn:uuid:{s.submission_id}"}]
    if d.scoring == "sum":
        resource["valueInteger"] = int(s.total)
    else:  # a mean (EDE-Q global): FHIR has no valueDecimal on Observation
        resource["valueQuantity"] = {"value": round(float(s.total), 2), "unit": "{score}", "system": UCUM, "code": "{score}"}
    if s.band:
        label = next((b.label for b in d.bands if b.code == s.band), s.band)
        resource["interpretation"] = [{"coding": [{"system": f"{LOCAL}/band/{d.code}", "code": s.band, "display": label}],
                                       "text": label}]
    if s.subscales:
        resource["component"] = [
            {"code": {"coding": [{"system": f"{LOCAL}/subscale/{d.code}", "code": sub, "display": sub}]},
             "valueQuantity": {"value": round(value, 2), "unit": "{score}", "system": UCUM, "code": "{score}"}}
            for sub, value in sorted(s.subscales.items())
        ]
    return resource


def episode_bundle(*, episode_id: UUID, person_id: str, submissions: Iterable[ExportedSubmission], catalogue: Catalogue,
                   generated_at: datetime, answers: bool = True) -> dict:
    entries = []
    for s in submissions:
        if answers:
            qr = questionnaire_response(s, person_id, episode_id, catalogue)
            entries.append({"fullUrl": f"urn:uuid:{qr['id']}", "resource": qr})
        obs = observation(s, person_id, catalogue, derived_from=answers)
        entries.append({"fullUrl": f"urn:uuid:{obs['id']}", "resource": obs})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(episode_id, f"bundle:{instant(generated_at)}")),
        "identifier": {"system": f"{LOCAL}/episode", "value": str(episode_id)},
        "type": "collection",
        "timestamp": instant(generated_at),
        "entry": entries,
    }
