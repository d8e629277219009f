"""The JSON Schema of each event type, generated from its model on demand (the models are the one
source; ``docs/events/schemas/`` holds the published copies, written by ``python -m
rapport_tools.contracts.export``, which adds one generated example to each)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import EVENT_MODELS
from .envelope import schema_uri
from .internal import INTERNAL_MODELS


def model_of(event_type: str) -> type[BaseModel]:
    """The model of a partner or internal type; ``KeyError`` for an unknown one."""
    return EVENT_MODELS.get(event_type) or INTERNAL_MODELS[event_type]


def collection_of(event_type: str) -> str:
    """``events`` (the partner contract) or the internal model's collection (``internal``)."""
    return "events" if event_type in EVENT_MODELS else getattr(INTERNAL_MODELS[event_type], "schema_collection")


def json_schema(event_type: str) -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of ``event_type``, without the generated example:
    ``$id`` is the ``ce_dataschema`` every record of the type carries."""
    model = model_of(event_type)
    schema = model.model_json_schema(mode="serialization")
    meta: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_uri(event_type, collection_of(event_type)),
        "x-cloudevents-type": event_type,
        "x-kafka-topic": getattr(model, "topic"),
    }
    if event_type in EVENT_MODELS:
        meta["x-kafka-key"] = "episode_id"
    return {**meta, **schema, "title": event_type}


def topics() -> dict[str, str]:
    """Partner event type → its Kafka topic."""
    return {t: getattr(m, "topic") for t, m in sorted(EVENT_MODELS.items())}
