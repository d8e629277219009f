"""One example per message, built from its model: the JSON Schemas (``examples``) and the AsyncAPI
document (message ``examples``: key, headers and value of a real record) show it.

The value is derived from the model's JSON Schema, field by field: the first ``examples`` entry
the model declares (``Field(examples=[...])``, or ``json_schema_extra={"examples": [...]}`` for the
whole message), else a plausible value for a few common field names (:data:`HINTS`), else one the
schema allows (first enum value, the lower bound, a fixed time, a UUID derived from the type and
the path). Optional fields are filled so the example shows every field. The result goes through
the model (``model_validate``, then ``model_dump(mode="json")``, exactly what a producer writes)
and is checked against the published schema; a model for which no valid value can be derived
raises :class:`ExampleError` naming the field: give that field ``examples=[...]``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel

from rapport_shared import envelope

# Every id in an example is derived from this namespace: the same model gives the same example.
NAMESPACE = uuid.UUID("6f1c1d2e-8a57-4b1e-9a53-52a9e1c0f00d")
EXAMPLE_TIME = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)

# Plausible values by field name (coded, pseudonymous: what a real record holds). A hint is used
# only where the schema accepts it.
HINTS: dict[str, Any] = {
    "person_id": "P-k7qm2x4avd3fj6ta",
    "clinician_id": "clin-001",
    "intake_clinician_id": "clin-002",
    "resolved_by": "clin-001",
    "organisation_id": "org-7f3a",
    "template_id": "ipt-standard",
    "instrument": "phq9",
    "loinc_code": "44261-6",
    "band": "moderate",
    "timezone": "Europe/London",
    "start": "09:00",
    "end": "12:00",
    "weekday": 2,
    "channel": "email",
    "kind": "session_reminder",
    "recipient_ref": "clinician:clin-001",
    "error_code": "smtp_rejected",
    "referral_source": "gp",
    "decision": "proceed",
    "diagnosis_code": "major_depressive_disorder",
    "end_reason": "completed",
    "flags": ["safety_item_positive"],
    "total": 11.0,
    "baseline_total": 18.0,
    "final_total": 7.0,
    "change": -11.0,
    "change_from_baseline": -7.0,
    "reliable_change_threshold": 6.0,
    "duration_minutes": 50,
    "contracted_sessions": 16,
    "previous_sessions": 12,
    "attended_sessions": 12,
    "treatment_sessions": 9,
    "missing_sessions": [8],
    "paired_measures": ["phq9", "gad7"],
    "missing": ["gad7"],
    "baseline_totals": {"phq9": 18.0, "gad7": 12.0},
    "final_totals": {"phq9": 7.0, "gad7": 5.0},
    "timepoint": "session",
    "session_number": 4,
    "number": 4,
    "secondary": "role_transition",
    "from_phase": "initial",
    "to_phase": "middle",
    "phase": "middle",
    "final_phase": "completed",
    "effective_from_session": 4,
    "sessions_remaining": 12,
    # booleans: a consistent story (a completed course that recovered), not whatever comes first
    "caseness": True,
    "caseness_at_baseline": True,
    "caseness_at_end": False,
    "finished_course": True,
    "counts_toward_recovery": True,
    "recovery": True,
    "reliable_improvement": True,
    "reliable_deterioration": False,
    "reliable_recovery": True,
    "response": True,
    "remission": True,
    "checklist_complete": False,
    "focus_changed": False,
    "optional_parent_session": False,
    "share_outcomes_with_referrer": False,
}
# Keys of a free-form object (``dict[str, X]``) by field name; the value comes from the schema.
KEY_HINTS: dict[str, str] = {"answers": "1", "subscales": "somatic", "baseline_totals": "phq9", "final_totals": "phq9",
                             "instruments": "phq9", "condition_measures": "edeq6"}
# Codes (``^[a-z0-9]...``) by field name of a given message, where the field name alone says too little.
REASON_CODES: dict[str, str] = {
    "rapport.intake.declined.v1": "excluded_active_psychosis",
    "rapport.session.rescheduled.v1": "patient_request",
    "rapport.session.cancelled.v1": "patient_unwell",
    "rapport.alert.raised.v1": "safety_item_positive",
    "rapport.course.contract_changed.v1": "clinical_review",
    "rapport.course.checklist_updated.v1": "focus_revised",
}


class ExampleError(ValueError):
    """No valid example could be derived; the message names the model and the field."""


def example_data(model: type[BaseModel], event_type: str | None = None) -> dict[str, Any]:
    """The example ``data`` of ``model`` as a producer writes it (JSON-ready)."""
    event_type = event_type or getattr(model, "event_type", model.__name__)
    schema = model.model_json_schema(mode="serialization")
    builder = _Builder(schema, event_type)
    raw = builder.value(schema, "")
    try:
        instance = model.model_validate(raw)
    except Exception as exc:
        raise ExampleError(f"{event_type}: the derived example is not valid for {model.__name__} ({exc}); give the "
                           "field examples=[...] in the model") from None
    return instance.model_dump(mode="json")


def example_id(event_type: str, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{event_type}/{what}"))


def example_record(model: type[BaseModel], *, source: str, collection: str = "events") -> envelope.KafkaRecord:
    """The example as a Kafka record (key, headers, value) in Rapport's CloudEvents binary mode: an
    episode's event is keyed by its ``episode_id`` and carries a correlation id; an internal message
    by its model's fixed ``subject``, without one (as the clock driver writes it)."""
    event_type = getattr(model, "event_type")
    data = example_data(model)
    episode = data.get("episode_id")
    event = envelope.new_event(type=event_type, source=source, subject=str(episode or getattr(model, "subject")),
                               data=data, time=EXAMPLE_TIME, id=example_id(event_type, "ce_id"),
                               correlation_id=example_id(event_type, "correlation") if episode else None,
                               dataschema=envelope.schema_uri(event_type, collection))
    return envelope.encode(event)


class _Builder:
    def __init__(self, root: dict[str, Any], event_type: str) -> None:
        self.root = root
        self.event_type = event_type

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def value(self, node: dict[str, Any], path: str) -> Any:
        node = self.resolve(node)
        name = path.rsplit(".", 1)[-1].split("[", 1)[0]
        if node.get("examples"):
            return node["examples"][0]
        alternatives = node.get("anyOf") or node.get("oneOf")
        if alternatives:
            usable = [a for a in alternatives if self.resolve(a).get("type") != "null"] or alternatives
            return self.value({**{k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "default")},
                               **self.resolve(usable[0])}, path)
        if "allOf" in node and len(node["allOf"]) == 1:
            return self.value({**{k: v for k, v in node.items() if k != "allOf"}, **self.resolve(node["allOf"][0])}, path)
        if "const" in node:
            return node["const"]
        hint = self._hint(name)
        if hint is not None and self._accepts(node, hint):
            return hint
        if "enum" in node:
            return node["enum"][0]
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            return self._object(node, path)
        if kind == "array":
            item = node.get("items", {})
            n = max(node.get("minItems", 1), 1)
            values = [self.value(item, f"{path}[{i}]") for i in range(n)]
            if node.get("uniqueItems") and len({repr(v) for v in values}) < n:
                raise ExampleError(f"{self.event_type}: {path}: cannot derive {n} distinct items; give it examples=[...]")
            return values
        if kind == "string":
            return self._string(node, path, name)
        if kind == "integer":
            return int(self._number(node, 1))
        if kind == "number":
            return float(self._number(node, 1.0))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        raise ExampleError(f"{self.event_type}: {path or '(root)'}: no example for schema {node}; give it examples=[...]")

    def _hint(self, name: str) -> Any:
        if name in ("reason_code", "reason_codes") and self.event_type in REASON_CODES:
            code = REASON_CODES[self.event_type]
            return code if name == "reason_code" else [code]
        return HINTS.get(name)

    def _object(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        out = {}
        for key, sub in node.get("properties", {}).items():
            out[key] = self.value(sub, f"{path}.{key}" if path else key)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and not node.get("properties"):
            name = path.rsplit(".", 1)[-1]
            key = KEY_HINTS.get(name, "example")
            out[key] = self.value(extra, f"{path}{{{key}}}")
        return out

    def _string(self, node: dict[str, Any], path: str, name: str) -> str:
        fmt = node.get("format")
        if fmt == "uuid":
            # The episode is the record key: one episode id per example, whatever model holds it.
            return example_id(self.event_type, "episode_id" if name == "episode_id" else path)
        if fmt == "date-time":
            return envelope.format_time(EXAMPLE_TIME)
        if fmt == "date":
            return EXAMPLE_TIME.date().isoformat()
        candidates = [name.replace("_", "-"), name, "example", "x1"]
        for text in candidates:
            if self._accepts(node, text):
                return text
        raise ExampleError(f"{self.event_type}: {path}: no example matches {node.get('pattern')!r}; give it examples=[...]")

    @staticmethod
    def _number(node: dict[str, Any], default: float) -> float:
        """``default`` moved into the bounds (a count of 1 where nothing says otherwise)."""
        low = node.get("minimum", node["exclusiveMinimum"] + 1 if "exclusiveMinimum" in node else default)
        return min(max(low, default), node.get("maximum", max(low, default)))

    def _accepts(self, node: dict[str, Any], value: Any) -> bool:
        """Whether ``value`` fits ``node`` (the keywords Rapport's contracts use; the model and the
        schema check the whole example afterwards)."""
        node = self.resolve(node)
        alternatives = node.get("anyOf") or node.get("oneOf")
        if alternatives:
            return any(self._accepts(a, value) for a in alternatives)
        if "enum" in node:
            return value in node["enum"]
        kind = node.get("type")
        if kind == "string":
            return isinstance(value, str) and ("pattern" not in node or re.search(node["pattern"], value) is not None)
        if kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if kind == "integer" and not float(value).is_integer():
                return False
            return node.get("minimum", value) <= value <= node.get("maximum", value)
        if kind == "boolean":
            return isinstance(value, bool)
        if kind == "array":
            return isinstance(value, list) and all(self._accepts(node.get("items", {}), v) for v in value)
        if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
            return isinstance(value, dict) and all(self._accepts(node["additionalProperties"], v) for v in value.values())
        return False
