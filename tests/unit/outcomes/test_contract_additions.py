"""The fields outcomes added to its v1 events are optional: a payload of the original v1 shape
still validates against the committed schemas, so existing producers and consumers keep working."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import jsonschema
import pytest

import rapport_shared.contracts as contracts

pytestmark = pytest.mark.unit
SCHEMAS = __import__("rapport_tools.contracts.export", fromlist=["x"]).SCHEMA_DIR
T = "2026-03-02T09:00:00Z"

ORIGINAL_V1 = {
    "rapport.score.submitted.v1": (
        {"episode_id": str(uuid.uuid4()), "submission_id": str(uuid.uuid4()), "instrument": "phq9", "timepoint": "session",
         "total": 12.0, "administered_at": T, "scored_at": T},
        {"alert_ids", "reliable_change_criterion"},
    ),
    "rapport.alert.raised.v1": (
        {"episode_id": str(uuid.uuid4()), "alert_id": str(uuid.uuid4()), "kind": "safety", "urgency": "urgent",
         "reason_code": "safety_item_positive", "clinician_id": "clin-1", "raised_at": T},
        {"session_number", "linked_alert_ids"},
    ),
    "rapport.alert.resolved.v1": (
        {"episode_id": str(uuid.uuid4()), "alert_id": str(uuid.uuid4()), "kind": "safety", "resolved_by": "clin-1",
         "action": "assessment", "resolved_at": T},
        {"linked_submission_ids"},
    ),
    "rapport.outcome.evaluated.v1": (
        {"episode_id": str(uuid.uuid4()), "finished_course": True, "evaluated_at": T},
        {"template_id", "clinician_id", "end_reason", "attended_sessions", "counts_toward_recovery", "paired_measures",
         "instruments", "treatment_sessions", "condition_measures", "measurement"},
    ),
}


@pytest.mark.parametrize("event_type", sorted(ORIGINAL_V1))
def test_original_v1_payloads_still_validate(event_type: str) -> None:
    payload, added = ORIGINAL_V1[event_type]
    schema = json.loads((SCHEMAS / f"{event_type}.json").read_text())
    jsonschema.validate(payload, schema)
    assert added <= set(schema["properties"]) and not added & set(schema.get("required", []))
    contracts.EVENT_MODELS[event_type].model_validate(payload)


def test_no_free_text_field_was_added() -> None:
    # Resolution text stays in outcomes: the resolved event carries the coded action only.
    schema = json.loads((SCHEMAS / "rapport.alert.resolved.v1.json").read_text())
    assert "action_text" not in schema["properties"]
