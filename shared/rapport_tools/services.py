"""The Rapport services, found through their entry points (``rapport.services``).

Each service registers a :class:`rapport_shared.service.ServiceSpec` in its ``pyproject.toml``;
the tools list them from here in the order they declare (the flow of an episode), never by a name
written in shared code. Reading the registry imports each installed service's small ``service.py``
only.

An image holds one service, but some tools act on the whole deployment (``rapport-admin
provision``, ``python -m rapport_tools.acl apply``, both run from a service image). So the image
build writes every service's registration as data (``python -m rapport_tools.services --json``,
deploy/build-images.sh) to ``/usr/share/rapport/services.json`` (or ``$RAPPORT_SERVICES_MANIFEST``);
the services registered there but not installed join the list, with their name, order and Kafka
access — their code is not there to load."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, fields
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rapport_shared.service import ENTRY_POINT_GROUP, KafkaAccess, ServiceSpec

MANIFEST_ENV = "RAPPORT_SERVICES_MANIFEST"
DEFAULT_MANIFEST = Path("/usr/share/rapport/services.json")  # written into the images by deploy/build-images.sh


def installed() -> dict[str, ServiceSpec]:
    """name → spec of every service installed here (its entry point)."""
    specs = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, ServiceSpec) or spec.name != ep.name:
            raise TypeError(f"entry point {ep.name} = {ep.value}: not the ServiceSpec of service {ep.name!r}")
        specs[spec.name] = spec
    return specs


def to_json(spec: ServiceSpec) -> dict[str, Any]:
    return asdict(spec)


def from_json(doc: dict[str, Any]) -> ServiceSpec:
    kafka = KafkaAccess(**{f.name: tuple(tuple(x) if isinstance(x, list) else x for x in doc["kafka"].get(f.name, ()))
                           for f in fields(KafkaAccess)})
    return ServiceSpec(**{**{k: v for k, v in doc.items() if k != "kafka"}, "kafka": kafka})


def manifest() -> dict[str, ServiceSpec]:
    """The registrations the image build wrote ({} where there is no manifest)."""
    path = Path(os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST)
    if not path.is_file():
        return {}
    return {d["name"]: from_json(d) for d in json.loads(path.read_text())}


@cache
def registered() -> dict[str, ServiceSpec]:
    """name → spec of every service (installed, else from the manifest), in their declared order."""
    specs = {**manifest(), **installed()}
    return {s.name: s for s in sorted(specs.values(), key=lambda s: (s.order, s.name))}


def names() -> tuple[str, ...]:
    return tuple(registered())


def get(name: str) -> ServiceSpec:
    """The spec of service ``name``; ``LookupError`` naming the known ones if there is none."""
    try:
        return registered()[name]
    except KeyError:
        raise LookupError(f"no service {name!r} here (known: {', '.join(names()) or 'none'})") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rapport_tools.services",
                                description="List the services installed here (entry points rapport.services).")
    p.add_argument("--json", action="store_true", help="their registrations as JSON (the images' manifest)")
    args = p.parse_args(argv)
    specs = sorted(installed().values(), key=lambda s: (s.order, s.name))
    if args.json:
        print(json.dumps([to_json(s) for s in specs], indent=2))
    else:
        for s in specs:
            print(f"{s.name}\t{s.package}\twrites {', '.join(s.kafka.writes) or '-'}\treads {', '.join(s.kafka.reads) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
