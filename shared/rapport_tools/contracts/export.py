"""Export every event model as a JSON Schema file: ``python -m rapport_tools.contracts.export [--check]``.

The schemas are committed once, where partners read them: ``docs/events/schemas/events/<type>.json``
(:data:`SCHEMA_DIR`; the ``ce_dataschema`` of every record names that path). ``python -m
rapport_tools.docs`` writes them too, with the AsyncAPI document and the HTML catalogue; this command
writes only them. Tests and tools that need a schema read it there or :func:`render` it from the
model; the compatibility baseline (``contracts/published/``) is another thing: the schemas as
partners last received them (compat.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.envelope import schema_uri


def repo_root() -> Path:
    """The checkout this runs from (the tools are used from the repository), else the working directory."""
    for base in Path(__file__).resolve().parents:
        if (base / "docs").is_dir() and (base / "shared").is_dir():
            return base
    return Path.cwd()


SCHEMA_DIR = repo_root() / "docs" / "events" / "schemas" / "events"


def render(event_type: str) -> str:
    model = EVENT_MODELS[event_type]
    schema = model.model_json_schema(mode="serialization")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_uri(event_type),
        "x-cloudevents-type": event_type,
        "x-kafka-topic": model.topic,
        "x-kafka-key": "episode_id",
        **schema,
        "title": event_type,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def expected_files(directory: Path = SCHEMA_DIR) -> dict[Path, str]:
    return {directory / f"{t}.json": render(t) for t in sorted(EVENT_MODELS)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="fail if a committed schema differs")
    args = p.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
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
