"""What a service declares about itself, so that shared code never lists services by name.

Each service package holds ``service.py`` with ``SERVICE = ServiceSpec(...)`` and registers it in
its ``pyproject.toml`` under the entry-point group :data:`ENTRY_POINT_GROUP`::

    [project.entry-points."rapport.services"]
    intake = "rapport_intake.service:SERVICE"

The tools (``rapport_tools.services``) and the test support find the installed services there: the
ACL set, ``rapport-admin provision``, ``rapport replay <svc>``, the AsyncAPI document, the test
system. The references to the service's code are ``"module:attribute"`` strings, loaded only when a
tool needs them (:meth:`ServiceSpec.load`), so reading the registry imports no service code.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "rapport.services"


@dataclass(frozen=True)
class KafkaAccess:
    """What one service does on Kafka (its ACLs in the secure profile). ``reads`` are consumed with
    the service's group (``rapport-<svc>``, prefixed so ``rapport-<svc>-contacts`` etc. are covered)
    except the clock topic, which is read by assign + seek."""

    writes: tuple[str, ...]
    reads: tuple[str, ...] = ()
    # Reads that are not handled by the EventConsumer, hence have no dead-letter topic.
    reads_without_dlq: tuple[str, ...] = ()
    # Extra (topic, operation) grants on literal topics.
    extra: tuple[tuple[str, str], ...] = ()
    # Prefixed topic READ grants (the notifier's rapport.private.*).
    read_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name (schema, role ``rapport_<name>``, group ``rapport-<name>``, image), its
    place in listings, its Kafka access and where its parts are. Empty references default to the
    common layout of ``package``."""

    name: str
    package: str  # the import package, e.g. "rapport_intake"
    order: int  # listings follow the flow of an episode: intake, scheduler, outcomes, notifier
    kafka: KafkaAccess
    cli: str = ""  # rapport-<name>: a function argv -> exit code
    settings: str = ""  # a function () -> ServiceSettings (from the RAPPORT_* environment)
    app: str = ""  # a function settings -> the FastAPI app (its state.runtime: the ServiceRuntime)
    handlers: str = ""  # its HandlerRegistry: the events it consumes, its commands and timers
    projection: str = ""  # what a replay rebuilds (rapport_shared.projection.Projection)
    access_policy: str = "access.yaml"  # route × role × relation, a file in the package

    def __post_init__(self) -> None:
        defaults = {"cli": "entrypoints.cli:main", "settings": "settings:load", "app": "bootstrap:build",
                    "handlers": "service_layer.handlers:handlers", "projection": "projection:PROJECTION"}
        for attr, ref in defaults.items():
            if not getattr(self, attr):
                object.__setattr__(self, attr, f"{self.package}.{ref}")

    @property
    def group(self) -> str:
        return f"rapport-{self.name}"

    def load(self, attr: str) -> Any:
        """Import and return what reference ``attr`` ("cli", "projection", ...) names."""
        return load_reference(getattr(self, attr))

    def package_dir(self) -> Path:
        """The package's directory (found without importing the package)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"service package {self.package} is not installed")
        return Path(next(iter(spec.submodule_search_locations)))

    def access_policy_path(self) -> Path:
        return self.package_dir() / self.access_policy


def load_reference(ref: str) -> Any:
    """``"package.module:attr"`` → the attribute (imports the module)."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj
