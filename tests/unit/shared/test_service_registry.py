"""Services register themselves (entry points ``rapport.services``); the tools find them there, and in
an image (one service installed) through the manifest the image build writes."""

from __future__ import annotations

import json

import pytest

from rapport_shared.messagebus import HandlerRegistry
from rapport_shared.projection import Projection
from rapport_shared.service import KafkaAccess, ServiceSpec
from rapport_tools import services as registry

pytestmark = pytest.mark.unit


@pytest.fixture
def fresh_registry():
    registry.registered.cache_clear()
    yield registry
    registry.registered.cache_clear()


def test_the_services_are_listed_in_their_declared_order():
    specs = registry.registered()
    assert list(specs)[:4] == ["intake", "scheduler", "outcomes", "notifier"]
    assert [s.order for s in specs.values()] == sorted(s.order for s in specs.values())
    assert all(spec.name == name and spec.package == f"rapport_{name}" for name, spec in specs.items())


@pytest.mark.parametrize("name", registry.names())
def test_every_reference_of_a_registration_resolves(name):
    spec = registry.get(name)
    assert callable(spec.load("cli")) and callable(spec.load("settings")) and callable(spec.load("app"))
    assert isinstance(spec.load("handlers"), HandlerRegistry)
    assert isinstance(spec.load("projection"), Projection)
    assert spec.access_policy_path().is_file()
    assert spec.group == f"rapport-{name}"


def test_the_manifest_round_trips_and_adds_what_is_not_installed(tmp_path, monkeypatch, fresh_registry):
    installed = registry.installed()
    absent = ServiceSpec(name="zz-absent", package="rapport_zz_absent", order=99,
                         kafka=KafkaAccess(writes=(), reads=("rapport.intake",), extra=(("rapport.intake", "DESCRIBE"),)))
    manifest = tmp_path / "services.json"
    manifest.write_text(json.dumps([registry.to_json(s) for s in (*installed.values(), absent)]))
    monkeypatch.setenv(registry.MANIFEST_ENV, str(manifest))
    assert registry.manifest() == {**installed, "zz-absent": absent}
    assert set(registry.names()) == {*installed, "zz-absent"} and registry.names()[-1] == "zz-absent"  # by order
    with pytest.raises(ModuleNotFoundError):
        registry.get("zz-absent").load("cli")  # data only: its code is not here
    with pytest.raises(LookupError, match="no service 'nobody'"):
        registry.get("nobody")
