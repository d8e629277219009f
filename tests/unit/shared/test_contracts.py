"""The committed JSON Schemas are the partner contract: they must match the models exactly."""

import uuid

import jsonschema
import pytest
from pydantic import ValidationError

from rapport_shared.contracts import EVENT_MODELS, IntakeCompletedV1
from rapport_tools.contracts.export import expected_files

REQUIRED = {"rapport.intake.completed.v1", "rapport.course.planned.v1", "rapport.course.phase_changed.v1",
            "rapport.score.submitted.v1"}


def test_required_event_types_exist():
    assert REQUIRED <= set(EVENT_MODELS)


@pytest.mark.parametrize("path,text", sorted(expected_files().items()), ids=lambda v: getattr(v, "name", ""))
def test_committed_schema_matches_model(path, text):
    assert path.exists(), f"{path.name} is not committed: run python -m rapport_tools.contracts.export"
    assert path.read_text() == text, f"{path.name} differs from its model: regenerate and review the change"


def test_every_committed_schema_has_a_model():
    committed = {p.name for p in next(iter(expected_files())).parent.glob("*.json")}
    assert committed == {p.name for p in expected_files()}


def intake_payload(**over):
    base = dict(
        episode_id=str(uuid.uuid4()), person_id="P-000123", target_condition="depression", template_id="ipt-standard",
        focus={"primary": "grief"}, clinician_id="clin-7",
        availability={"timezone": "Europe/London", "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"}]},
        referred_at="2026-11-01T10:00:00Z", completed_at="2026-11-02T10:00:00Z",
    )
    base.update(over)
    return base


@pytest.mark.parametrize("person_id", ["jane.doe@example.org", "Jane Doe", "+447700900123", ""])
def test_identifiers_refuse_contact_details_and_names(person_id):
    with pytest.raises(ValidationError):
        IntakeCompletedV1.model_validate(intake_payload(person_id=person_id))


def test_schema_and_model_agree_on_a_valid_payload():
    payload = IntakeCompletedV1.model_validate(intake_payload()).model_dump(mode="json")
    schema = __import__("json").loads(expected_files()[next(p for p in expected_files() if p.name.startswith("rapport.intake.completed"))])
    jsonschema.validate(payload, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**payload, "focus": {"primary": "loneliness"}}, schema)
