"""Export every event model as a JSON Schema file: ``python -m rapport_tools.contracts.export [--check]``.

The models are the one source; the schemas are committed once, generated, where partners read
them: ``docs/events/schemas/events/<type>.json`` (:data:`SCHEMA_DIR`, the partner contract) and
``docs/events/schemas/internal/<type>.json`` (:data:`INTERNAL_DIR`: the simulated clock's tick,
``rapport_shared.contracts.internal``). Each schema's ``$id`` is the absolute URI every record of
its type carries as ``ce_dataschema`` (``envelope.schema_uri``: ``<base>events/<type>.json``, base
``RAPPORT_SCHEMA_BASE_URI``, docs/partners.md "Schema URIs"), and ``examples`` holds one example
built from the model (:mod:`.examples`). ``python -m rapport_tools.docs`` writes them too, with the
AsyncAPI document and the HTML catalogue; this command writes only them. Tests and tools that need
a schema read it there or :func:`render` it from the model; the compatibility baseline
(``contracts/published/``) is another thing: the schemas as partners last received them (compat.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.contracts.internal import INTERNAL_MODELS
from rapport_shared.envelope import schema_uri

from .examples import example_data


def repo_root() -> Path:
    """The checkout this runs from (the tools are used from the repository), else the working directory."""
    for base in Path(__file__).resolve().parents:
        if (base / "docs").is_dir() and (base / "shared").is_dir():
            return base
    return Path.cwd()


SCHEMAS_ROOT = repo_root() / "docs" / "events" / "schemas"
SCHEMA_DIR = SCHEMAS_ROOT / "events"
INTERNAL_DIR = SCHEMAS_ROOT / "internal"


def collection_of(event_type: str) -> str:
    """The folder under ``docs/events/schemas/`` (and the URI path segment) of a type's schema."""
    return "events" if event_type in EVENT_MODELS else getattr(INTERNAL_MODELS[event_type], "schema_collection")


def model_of(event_type: str) -> type[BaseModel]:
    return EVENT_MODELS.get(event_type) or INTERNAL_MODELS[event_type]


def render(event_type: str) -> str:
    """The published JSON Schema (draft 2020-12) of a partner or internal type, as text."""
    model = model_of(event_type)
    schema = model.model_json_schema(mode="serialization")
    meta: dict[str, object] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_uri(event_type, collection_of(event_type)),
        "x-cloudevents-type": event_type,
        "x-kafka-topic": getattr(model, "topic"),
    }
    if event_type in EVENT_MODELS:
        meta["x-kafka-key"] = "episode_id"
    if "examples" not in schema:  # a model may declare its own (json_schema_extra)
        schema["examples"] = [example_data(model, event_type)]
    return json.dumps({**meta, **schema, "title": event_type}, indent=2, sort_keys=True) + "\n"


def expected_files(directory: Path = SCHEMA_DIR) -> dict[Path, str]:
    """path → text of the partner contract's schemas (one directory)."""
    return {directory / f"{t}.json": render(t) for t in sorted(EVENT_MODELS)}


def published_files(root: Path = SCHEMAS_ROOT) -> dict[Path, str]:
    """path → text of every published schema, partner and internal, under ``root`` (``<collection>/<type>.json``)."""
    return {root / collection_of(t) / f"{t}.json": render(t) for t in [*sorted(EVENT_MODELS), *sorted(INTERNAL_MODELS)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="fail if a committed schema differs")
    args = p.parse_args(argv)
    stale = []
    for path, text in published_files().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale or missing schemas (run python -m rapport_tools.contracts.export):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
