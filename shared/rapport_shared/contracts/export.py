"""Export every event model as a JSON Schema file: ``python -m rapport_shared.contracts.export [--check]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..envelope import schema_uri
from . import EVENT_MODELS

SCHEMA_DIR = Path(__file__).parent / "schemas"


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


def expected_files() -> dict[Path, str]:
    return {SCHEMA_DIR / f"{t}.json": render(t) for t in sorted(EVENT_MODELS)}


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
        print("stale or missing schemas (run python -m rapport_shared.contracts.export):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
