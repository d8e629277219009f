"""Every consuming service runs as two replicas (issue 13, item 5): in docker-compose.yml (a second
service of the same image and environment, reachable under the first's name, no host port; the
secure profile connects it as the first) and in the Kubernetes base (so every overlay)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rapport_tools.acl import service_access

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def consuming_services() -> list[str]:
    """Services that read a topic with their consumer group (the clock is read without one)."""
    return sorted(name for name, access in service_access().items()
                  if set(access.reads) - set(access.reads_without_dlq))


def test_the_consuming_services_are_known():
    assert {"scheduler", "outcomes", "notifier"} <= set(consuming_services())
    assert "intake" not in consuming_services()


@pytest.mark.parametrize("svc", consuming_services())
def test_compose_runs_two_replicas(svc):
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    first, second = services[svc], services[f"{svc}-2"]
    assert second["image"] == first["image"] and second["environment"] == first["environment"]
    assert second["depends_on"] == first["depends_on"] and second["healthcheck"] == first["healthcheck"]
    assert "ports" not in second, "one host port per service: the second replica publishes none"
    assert second["networks"]["default"]["aliases"] == [svc]


@pytest.mark.parametrize("svc", consuming_services())
def test_the_secure_profile_connects_the_second_replica_as_the_first(svc):
    secure = yaml.safe_load((ROOT / "docker-compose.secure.yml").read_text())["services"]
    assert secure[f"{svc}-2"] == secure[svc]


@pytest.mark.parametrize("svc", consuming_services())
def test_the_kubernetes_base_runs_two_replicas(svc):
    (deployment,) = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / svc / "deployment.yaml").read_text())
                     if d and d.get("kind") == "Deployment"]
    assert deployment["spec"]["replicas"] >= 2
