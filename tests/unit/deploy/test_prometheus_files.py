"""deploy/prometheus: the compose stack's Prometheus, checked on the files as it reads them.

- rules/rapport.rules.yml is the spec of the PrometheusRule deploy/k8s/alerts/prometheusrule.yaml
  (the one source; deploy/prometheus/rules-from-crd.sh writes the copy);
- prometheus.yml scrapes every service docker-compose.yml runs, on its RAPPORT_HTTP_PORT, labelled
  as the ServiceMonitor labels it on Kubernetes, with the token file compose mounts, and loads the
  rules directory the image holds; compose runs the image deploy/build-images.sh builds;
- ``promtool check config`` (which checks the rule files it loads too) and ``promtool check rules``
  pass: Debian's promtool when it is on PATH, else the one inside the built image
  rapport/prometheus (deploy/test.sh builds it with the infrastructure images), else skipped,
  saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "deploy" / "prometheus"
CONFIG = PROM / "prometheus.yml"
RULES = PROM / "rules" / "rapport.rules.yml"
CRD = ROOT / "deploy" / "k8s" / "alerts" / "prometheusrule.yaml"
IMAGE = re.search(r"^PROMETHEUS_IMAGE=(\S+)", (ROOT / "deploy" / "build-images.sh").read_text(), re.M).group(1)
TOKEN_IN_CONTAINER = "/etc/prometheus/secrets/metrics.token"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def dns_name(name: str, svc: dict) -> str:
    aliases = ((svc.get("networks") or {}).get("default") or {}).get("aliases") or []
    return aliases[0] if aliases else name


def test_the_rules_prometheus_loads_are_the_prometheusrule_spec():
    (crd,) = yaml.safe_load_all(CRD.read_text())
    assert yaml.safe_load(RULES.read_text()) == crd["spec"], \
        "deploy/prometheus/rules/rapport.rules.yml is stale: run deploy/prometheus/rules-from-crd.sh"
    assert sorted(p.name for p in RULES.parent.iterdir()) == [RULES.name]


def test_the_config_scrapes_every_service_compose_runs_with_the_mounted_token():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert "COPY rules/ /etc/prometheus/rules/" in (PROM / "Dockerfile").read_text()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "rapport"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": TOKEN_IN_CONTAINER}
    scraped = {sd["names"][0]: sd["port"] for sd in job["dns_sd_configs"]}
    assert all(len(sd["names"]) == 1 and sd["type"] == "A" for sd in job["dns_sd_configs"])
    services = compose()
    # By the DNS name Prometheus looks up: a second replica answers to its first's (a network alias).
    running = {dns_name(name, svc): int(svc["environment"]["RAPPORT_HTTP_PORT"]) for name, svc in services.items()
               if str(svc.get("image", "")).startswith("rapport/") and "RAPPORT_HTTP_PORT" in svc.get("environment", {})
               and svc.get("command") != ["migrate"]}
    assert {"intake", "scheduler", "outcomes", "notifier"} <= set(running)
    assert scraped == running
    # service = job = rapport-<name>: the ServiceMonitor's labels, which the rules and dashboards use.
    relabel = job["relabel_configs"]
    assert relabel[0] == {"source_labels": ["__meta_dns_name"], "target_label": "service", "replacement": "rapport-$1"}
    assert relabel[1] == {"source_labels": ["service"], "target_label": "job"}

    prom = services["prometheus"]
    assert prom["image"] == IMAGE
    (secrets,) = [v for v in prom["volumes"] if ":/etc/prometheus/secrets" in v]
    assert secrets.endswith(":/etc/prometheus/secrets:ro") and TOKEN_IN_CONTAINER.startswith("/etc/prometheus/secrets/")
    assert all(p.startswith("127.0.0.1:") for p in prom["ports"])


def promtool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """promtool ARGS on the repository's files, seen at the paths the image gives them; a stand-in
    token file (the real one is mounted at run time)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "metrics.token").write_text("stand-in\n")
    host = shutil.which("promtool")
    if host:
        config = tmp_path / "prometheus.yml"
        config.write_text(CONFIG.read_text().replace("/etc/prometheus/rules/", f"{RULES.parent}/")
                          .replace(TOKEN_IN_CONTAINER, str(secrets / "metrics.token")))
        paths = {"/etc/prometheus/prometheus.yml": str(config), "/etc/prometheus/rules/": f"{RULES.parent}/"}
        argv = [host] + [next((a.replace(k, v) for k, v in paths.items() if a.startswith(k)), a) for a in args]
    else:
        docker = shutil.which("docker")
        if not docker or subprocess.run([docker, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
            pytest.skip(f"no promtool on PATH and no image {IMAGE} (bash deploy/build-images.sh --infra-only builds it)")
        argv = [docker, "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "promtool",
                "-v", f"{CONFIG}:/etc/prometheus/prometheus.yml:ro", "-v", f"{RULES.parent}:/etc/prometheus/rules:ro",
                "-v", f"{secrets}:/etc/prometheus/secrets:ro", IMAGE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_config_and_the_rules_it_loads(tmp_path):
    out = promtool(tmp_path, "check", "config", "/etc/prometheus/prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_promtool_checks_the_rules(tmp_path):
    out = promtool(tmp_path, "check", "rules", f"/etc/prometheus/rules/{RULES.name}")
    assert out.returncode == 0, out.stdout + out.stderr
    (crd,) = yaml.safe_load_all(CRD.read_text())
    count = sum(len(g["rules"]) for g in crd["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in out.stdout + out.stderr
