"""deploy/k8s against the code it deploys (no cluster: consistency, not behaviour).

What is checked, on base/ as written and — when kustomize or kubectl is on PATH — on every overlay
as kustomize renders it:
- every RAPPORT_* variable a service gets (its ConfigMaps, Secrets, env) is a field of that
  service's settings class, and the resulting environment passes the settings' validation;
- per service exactly one Deployment, one Service and one migration; probes on routes the
  service's FastAPI app serves, on the port RAPPORT_HTTP_PORT says; commands the CLI accepts;
  images as deploy/build-images.sh names them; the image's user; compose's grace period;
- the provisioning Job gets exactly the variables `rapport-admin provision` reads, with passwords
  matching the services' DSNs;
- tokens: no service gets an HMAC secret (RAPPORT_AUTH_SECRET); RAPPORT_AUTH_JWKS is a file that a
  ConfigMap volume puts into every container (the app is built on what that file holds) or, in
  production only, an https URL; base/dev hold the development JWKS of deploy/dev-keys, so
  `rapport-admin token` verifies there; production trusts no development key;
- production: RAPPORT_ENVIRONMENT=production, no Secret applied, no development secret, no
  simulated clock; the simulated clock only in the dev overlay.
YAML is read by PyYAML (safe_load_all); the services are the installed ones (rapport_tools.services).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from rapport_tools import admin as shared_cli
from rapport_tools import services as registry
from rapport_shared.http.auth import DEV_KID_PREFIX, TokenIssuer
from rapport_shared.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
SERVICES = registry.names()
# The kustomizations that are applied as such; every other one is used by one of these.
ENTRY_POINTS = {"overlays/dev", "overlays/dev/provision", "overlays/production",
                "overlays/production/provision", "monitoring", "alerts", "dashboards"}
PROBE_ROUTES = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
ADMIN_ENV = {"RAPPORT_ADMIN_DSN", "RAPPORT_DATABASE"} | {f"RAPPORT_DB_PASSWORD_{s.upper()}" for s in SERVICES}
# Defaults that must never reach production (ServiceSettings, docker-compose*.yml).
DEV_SECRET_MARKERS = ("dev-only", "-dev-password", "-dev-kafka-password")
# The development issuer's public keys (deploy/dev-keys/README.md): what base/ and the dev overlay trust.
DEV_JWKS = json.loads((ROOT / "deploy" / "dev-keys" / "jwks.json").read_text())
# Production points RAPPORT_AUTH_JWKS at the identity provider's URL; the app is built on this
# stand-in JWKS instead (a non-development kid), as on a stand-in for an out-of-band secret.
STAND_IN_IDP = TokenIssuer.generate("k8s-test-idp-1")


# --------------------------------------------------------------------------------------------
# Reading the repository


def load_all(text: str) -> list:
    """Every non-empty document of ``text``."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def load_yaml(path: Path) -> list:
    return load_all(path.read_text())


def yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))


def kustomization(directory: Path) -> dict:
    (doc,) = load_yaml(directory / "kustomization.yaml")
    return doc


def collect(directory: Path) -> list[dict]:
    """The objects of a kustomization that only lists resources (base/ and its parts)."""
    k = kustomization(directory)
    extra = set(k) - {"apiVersion", "kind", "resources"}
    assert not extra, f"{directory.relative_to(ROOT)} transforms ({sorted(extra)}): render it with kustomize instead"
    objs = []
    for entry in k.get("resources", []):
        path = directory / entry
        objs += collect(path) if path.is_dir() else load_yaml(path)
    return objs


@functools.cache
def base_objects() -> tuple[dict, ...]:
    return tuple(collect(K8S / "base") + collect(K8S / "base" / "shared" / "provision"))


def settings_class(svc: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"rapport_{svc}.settings")
    (cls,) = {v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings}
    return cls


def env_names(cls: type) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or prefix + name).upper())
    return names


def service_version(svc: str) -> str:
    return tomllib.loads((ROOT / "services" / svc / "pyproject.toml").read_text())["project"]["version"]


def cli_entry(svc: str):
    """The console script rapport-<svc> (the image's entrypoint links to it)."""
    scripts = tomllib.loads((ROOT / "services" / svc / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts[f"rapport-{svc}"].split(":")
    return getattr(importlib.import_module(module), func)


def cli_accepts(main, argv: list[str]) -> bool:
    """Whether argparse accepts ``argv`` (checked with --help appended: nothing runs)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main([*argv, "--help"])
        except SystemExit as exc:
            return exc.code == 0
    return False


def build_images_script() -> tuple[list[str], str]:
    """(services, image repository prefix) as deploy/build-images.sh builds them."""
    text = (ROOT / "deploy" / "build-images.sh").read_text()
    services = re.search(r"^SERVICES=\(([^)]*)\)", text, re.M).group(1).split()
    prefix = re.search(r'image="([^"$]+)/\$svc:\$version"', text).group(1)
    return services, prefix


def compose_grace_seconds() -> set[int]:
    text = (ROOT / "docker-compose.yml").read_text()
    return {int(s) for s in re.findall(r"stop_grace_period:\s*(\d+)s\b", text)}


@contextlib.contextmanager
def environ(env: dict[str, str]):
    """os.environ with no RAPPORT_* variable but ``env`` (the settings read the process env)."""
    saved = dict(os.environ)
    try:
        for k in [k for k in os.environ if k.startswith("RAPPORT_")]:
            del os.environ[k]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --------------------------------------------------------------------------------------------
# A rendered environment: the objects one overlay applies


class Env:
    def __init__(self, name: str, objs: list[dict], *, external_secrets: bool = False) -> None:
        self.name, self.objs, self.external_secrets = name, objs, external_secrets
        by = {}
        for o in objs:
            key = (o["kind"], o["metadata"]["name"])
            assert key not in by, f"{name}: {key} twice"
            by[key] = o
        self.by = by

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objs if o["kind"] == kind]

    def secret(self, name: str) -> tuple[dict, bool]:
        """(data, whether this environment applies the Secret itself)."""
        obj = self.by.get(("Secret", name))
        applied = obj is not None
        if obj is None and self.external_secrets:
            # Created out of band in this environment: base/'s placeholder shows its keys.
            obj = next((o for o in base_objects() if o["kind"] == "Secret" and o["metadata"]["name"] == name), {})
        assert obj is not None, f"{self.name}: Secret {name} is referenced but not applied: the pods would not start"
        assert not obj.get("data"), f"{self.name}: Secret {name}: use stringData in the repo"
        return dict(obj.get("stringData") or {}), applied

    def configmap_data(self, name: str) -> dict:
        obj = self.by.get(("ConfigMap", name))
        assert obj is not None, f"{self.name}: ConfigMap {name} is referenced but not defined"
        return dict(obj.get("data") or {})

    def container_env(self, c: dict) -> dict[str, str | None]:
        """Name → value (None: from a Secret created out of band) of what a container gets."""
        env: dict[str, str | None] = {}
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref:
                env.update(self.configmap_data(ref["configMapRef"]["name"]))
            else:
                data, applied = self.secret(ref["secretRef"]["name"])
                env.update(data if applied else dict.fromkeys(data))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                obj = self.by.get(("Secret", ref["name"]))
                if obj is not None:
                    assert ref["key"] in (obj.get("stringData") or {}), f"{self.name}: {ref} names no key of the Secret"
                    env[e["name"]] = obj["stringData"][ref["key"]]
                elif not ref.get("optional"):
                    assert self.external_secrets, f"{self.name}: Secret {ref['name']} is required but not applied"
                    env[e["name"]] = None
            else:
                env[e["name"]] = None
        return env

    def mounted_files(self, spec: dict, c: dict) -> dict[str, str]:
        """Path → content of the files a container sees from ConfigMap volumes (all keys, no items)."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        files = {}
        for m in c.get("volumeMounts", []):
            vol = volumes.get(m["name"])
            assert vol is not None, f"{self.name}: {c['name']} mounts {m['name']}, which is no volume of the pod"
            if "configMap" not in vol:
                continue
            assert "items" not in vol["configMap"] and "subPath" not in m, \
                f"{self.name}: mount the whole ConfigMap {vol['configMap']['name']} (a subPath is never updated)"
            for key, value in self.configmap_data(vol["configMap"]["name"]).items():
                files[f"{m['mountPath'].rstrip('/')}/{key}"] = value
        return files

    def deployments(self) -> dict[str, dict]:
        """Service name → its Deployment (by the image's repository name)."""
        out: dict[str, list[dict]] = {}
        for d in self.of_kind("Deployment"):
            svc = image_service(pod_spec(d)["containers"][0]["image"])
            out.setdefault(svc, []).append(d)
        for svc, ds in out.items():
            assert len(ds) == 1, f"{self.name}: {len(ds)} Deployments for {svc}"
        return {svc: ds[0] for svc, ds in out.items()}


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def image_service(image: str) -> str:
    m = re.fullmatch(r"(?:.+/)?([a-z0-9-]+)/([a-z0-9-]+):([A-Za-z0-9._-]+)", image)
    assert m, f"image {image!r} is not <repository>/<name>:<tag>"
    return m.group(2)


def split_image(image: str) -> tuple[str, str, str]:
    m = re.fullmatch(r"(?:(.+)/)?([a-z0-9-]+/[a-z0-9-]+):([A-Za-z0-9._-]+)", image)
    return m.group(1) or "", m.group(2), m.group(3)


def effective_env(env: Env, c: dict, svc: str) -> dict[str, str]:
    """A container's environment with values for what production creates out of band."""
    out = {}
    for k, v in env.container_env(c).items():
        if v is None:
            v = stand_in(k, svc)
        out[k] = v
    return out


def stand_in(name: str, svc: str) -> str:
    """A well-formed, non-development value for a secret that the repo does not hold."""
    if name == "RAPPORT_CONTACTS_KEYS":
        return json.dumps({"k8s-test-1": base64.b64encode(b"k8s-test-contacts-key-0123456789").decode()})
    if name == "RAPPORT_CONTACTS_ACTIVE_KEY":
        return "k8s-test-1"
    if name == "RAPPORT_DATABASE_DSN":
        # production refuses a DSN without verified TLS (deploy/README.md, "Kubernetes")
        return f"postgresql://rapport_{svc}:stand-in@db.invalid:5432/rapport?sslmode=verify-full"
    return "stand-in-secret-value-of-at-least-32-bytes"


@functools.cache
def app_paths(svc: str, env_items: tuple) -> frozenset[str]:
    """GET paths the service's app serves, built with its bootstrap as `rapport-<svc> openapi` does."""
    with environ(dict(env_items)):
        settings = importlib.import_module(f"rapport_{svc}.settings").load()
        app = importlib.import_module(f"rapport_{svc}.bootstrap").build(settings)
        paths = app.openapi()["paths"]
    return frozenset(p for p, ops in paths.items() if "get" in ops)


@functools.cache
def jwks_file(content: str) -> str:
    """A file holding ``content`` (what a pod reads at RAPPORT_AUTH_JWKS), for building the app here."""
    f = tempfile.NamedTemporaryFile("w", prefix="k8s-jwks-", suffix=".json", delete=False)  # noqa: SIM115
    with f:
        f.write(content)
    return f.name


def app_env(env: Env, spec: dict, c: dict, run_env: dict[str, str], *, production: bool) -> dict[str, str]:
    """``run_env`` with RAPPORT_AUTH_JWKS pointing at a local copy of what the container would read:
    the mounted ConfigMap file, or (production) a stand-in for the identity provider's URL."""
    where = f"{env.name}/{c['name']}"
    assert "RAPPORT_AUTH_SECRET" not in run_env, f"{where}: an HMAC secret lets its holder mint tokens; use a JWKS"
    location = run_env.get("RAPPORT_AUTH_JWKS", "")
    assert location, f"{where}: RAPPORT_AUTH_JWKS is not set"
    if location.startswith("https://"):
        assert production, f"{where}: only production verifies against an identity provider's URL"
        content = json.dumps(STAND_IN_IDP.jwks())
    else:
        files = env.mounted_files(spec, c)
        assert location in files, f"{where}: RAPPORT_AUTH_JWKS={location} is no file of its ConfigMap volumes {sorted(files)}"
        content = files[location]
        keys = json.loads(content).get("keys", [])
        assert keys and all("d" not in k for k in keys), f"{where}: the JWKS must hold public keys only"
        if not production:
            assert json.loads(content) == DEV_JWKS, \
                f"{where}: not deploy/dev-keys/jwks.json: `rapport-admin token` would sign tokens it refuses"
    return {**run_env, "RAPPORT_AUTH_JWKS": jwks_file(content)}


def load_settings(svc: str, env: dict[str, str]) -> ServiceSettings:
    with environ(env):
        settings = importlib.import_module(f"rapport_{svc}.settings").load()
        settings.kafka_security()  # KafkaSecurity validates protocol, mechanism and username
    return settings


# --------------------------------------------------------------------------------------------
# The checks one environment must pass


def check_environment(env: Env, *, production: bool) -> dict[str, ServiceSettings]:
    """Everything per service; returns the settings each service would run with."""
    deployments = env.deployments()
    assert set(deployments) == set(SERVICES), f"{env.name}: Deployments for {sorted(deployments)}"
    script_services, prefix = build_images_script()
    assert sorted(script_services) == sorted(SERVICES), "build-images.sh builds other services than the CLI knows"
    grace = compose_grace_seconds()
    assert len(grace) == 1, f"docker-compose.yml: stop_grace_period values {grace}"
    migrations = {svc: 0 for svc in SERVICES}
    loaded: dict[str, ServiceSettings] = {}

    for svc, dep in deployments.items():
        where = f"{env.name}: Deployment {dep['metadata']['name']}"
        spec = pod_spec(dep)
        names = env_names(settings_class(svc))
        main, *others = spec["containers"]
        assert not others, f"{where}: one container expected"
        containers = [*spec.get("initContainers", []), main]

        # Images: as build-images.sh tags them (a registry in front is fine).
        for c in containers:
            _, repo, tag = split_image(c["image"])
            assert repo == f"{prefix}/{svc}", f"{where}: image {c['image']}, build-images.sh builds {prefix}/{svc}"
            allowed = {service_version(svc)} if production else {service_version(svc), "latest"}
            assert tag in allowed, f"{where}: tag {tag!r}, build-images.sh makes {sorted(allowed)}"

        # Commands: the image's entrypoint is the service CLI; the args are its subcommands.
        for c in containers:
            assert "command" not in c, f"{where}/{c['name']}: keep the image's entrypoint (rapport-{svc})"
            assert cli_accepts(cli_entry(svc), c["args"]), f"{where}/{c['name']}: rapport-{svc} refuses {c['args']}"
        assert main["args"] == ["run"], f"{where}: the service container must run `run`"
        migrate = [c for c in containers if c["args"] == ["migrate"]]
        migrations[svc] += len(migrate)
        for c in spec.get("initContainers", []):
            assert c.get("envFrom") == main.get("envFrom") and c.get("env") == main.get("env"), \
                f"{where}: init container {c['name']} must get the same settings as {main['name']}"

        # Environment: every RAPPORT_* variable is a setting of this service, and values are strings.
        for c in containers:
            raw = env.container_env(c)
            unknown = sorted(k for k in raw if k.startswith("RAPPORT_") and k.upper() not in names)
            assert not unknown, f"{where}/{c['name']}: not settings of {settings_class(svc).__name__}: {unknown}"
            bad = sorted(k for k, v in raw.items() if v is not None and not isinstance(v, str))
            assert not bad, f"{where}/{c['name']}: values must be strings (quote them): {bad}"
        run_env = effective_env(env, main, svc)
        settings = loaded[svc] = load_settings(svc, run_env)
        assert settings.service_name == svc
        # Tokens: the JWKS each container reads (the app is built on it below: a development key in
        # production, or an empty JWKS, refuses to build, as the service would refuse to start).
        built_env = app_env(env, spec, main, run_env, production=production)
        for c in spec.get("initContainers", []):
            assert app_env(env, spec, c, effective_env(env, c, svc), production=production) == built_env, \
                f"{where}: init container {c['name']} reads another JWKS than {main['name']}"

        # Pod: non-root as the image's user, no service links, compose's grace period.
        psc = spec["securityContext"]
        assert psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, \
            f"{where}: runAsNonRoot needs a numeric runAsUser (the image's USER is a name)"
        dockerfile_uid = re.search(r"useradd[^\n]*--uid[ =](\d+)", (ROOT / "deploy" / "python-runtime.Dockerfile").read_text())
        if dockerfile_uid:
            assert psc["runAsUser"] == int(dockerfile_uid.group(1)), f"{where}: the Dockerfile's uid"
        for c in containers:
            csc = c.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False and csc.get("capabilities", {}).get("drop") == ["ALL"]
            assert c.get("resources", {}).get("requests") and c["resources"].get("limits"), f"{where}/{c['name']}: resources"
        assert spec.get("enableServiceLinks") is False, \
            f"{where}: service links would put RAPPORT_<SERVICE>_PORT=tcp://... into the settings' env prefix"
        assert spec["terminationGracePeriodSeconds"] in grace, f"{where}: grace period, compose says {grace}"

        # Probes: routes the app serves, on RAPPORT_HTTP_PORT.
        ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
        paths = app_paths(svc, tuple(sorted(built_env.items())))
        for probe, route in PROBE_ROUTES.items():
            get = main[probe]["httpGet"]
            assert get["path"] == route and route in paths, f"{where}: {probe} {get['path']} (app serves {sorted(paths)})"
            port = ports.get(get["port"], get["port"])
            assert port == settings.http_port, f"{where}: {probe} on {port}, RAPPORT_HTTP_PORT is {settings.http_port}"

        # Service: selects this Deployment's pods, reaches RAPPORT_HTTP_PORT.
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        services = [s for s in env.of_kind("Service") if s["spec"]["selector"].items() <= labels.items()]
        assert len(services) == 1, f"{where}: {len(services)} Services select its pods"
        (port,) = services[0]["spec"]["ports"]
        target = ports.get(port["targetPort"], port["targetPort"])
        assert target == settings.http_port, f"{where}: Service targets {target}, RAPPORT_HTTP_PORT is {settings.http_port}"

    # Migrations: exactly one per service, in the Deployment or as a Job.
    for job in env.of_kind("Job"):
        for c in pod_spec(job)["containers"]:
            if c.get("args") == ["migrate"] and "command" not in c:
                migrations[image_service(c["image"])] += 1
    assert migrations == {svc: 1 for svc in SERVICES}, f"{env.name}: migrations per service {migrations}"

    # What the services must agree on.
    auth = {svc: (s.auth_jwks, s.auth_issuer, s.auth_audience, s.auth_max_token_lifetime_s) for svc, s in loaded.items()}
    assert len(set(auth.values())) == 1, f"{env.name}: the services verify tokens differently: {auth}"
    assert loaded["intake"].session_minutes == loaded["scheduler"].session_minutes, \
        "intake's availability must hold the session length the scheduler books"
    contacts = {svc: (s.contacts_keys.get_secret_value(), s.contacts_active_key)
                for svc, s in loaded.items() if "contacts_keys" in type(s).model_fields}
    assert set(contacts) == {"intake", "notifier"} and len(set(contacts.values())) == 1, \
        "intake encrypts contacts with keys the notifier does not hold"
    return loaded


def check_provision(env: Env, services: dict[str, ServiceSettings] | None = None) -> None:
    (job,) = [j for j in env.of_kind("Job") if pod_spec(j)["containers"][0].get("command") == ["rapport-admin"]]
    (c,) = pod_spec(job)["containers"]
    where = f"{env.name}: Job {job['metadata']['name']}"
    assert cli_accepts(shared_cli.admin_main, c["args"]) and c["args"][0] == "provision", f"{where}: {c['args']}"
    _, prefix = build_images_script()
    _, repo, tag = split_image(c["image"])
    assert repo.startswith(f"{prefix}/") and image_service(c["image"]) in SERVICES, f"{where}: not a service image"
    raw = env.container_env(c)
    names = {k for k in raw if k.startswith("RAPPORT_")}
    assert names == ADMIN_ENV, f"{where}: unknown {sorted(names - ADMIN_ENV)}, missing {sorted(ADMIN_ENV - names)}"
    assert pod_spec(job)["securityContext"].get("runAsNonRoot") is True
    if services is None:
        return
    # The passwords provision sets are the ones in the services' DSNs (same database and server).
    admin = urlsplit(raw["RAPPORT_ADMIN_DSN"])
    for svc, settings in services.items():
        dsn = urlsplit(settings.database_dsn)
        assert dsn.username == f"rapport_{svc}", f"{svc}: DSN user {dsn.username}, provision creates rapport_{svc}"
        assert dsn.password == raw[f"RAPPORT_DB_PASSWORD_{svc.upper()}"], f"{svc}: DSN password ≠ provision's"
        assert (dsn.hostname, dsn.port) == (admin.hostname, admin.port), f"{svc}: another server than provision's"
        assert dsn.path.lstrip("/") == raw["RAPPORT_DATABASE"] == admin.path.lstrip("/"), f"{svc}: database"


# --------------------------------------------------------------------------------------------
# Tests on the files (no tool needed)


def test_every_file_parses_and_every_kustomization_entry_exists():
    used: set[Path] = set()
    kustomizations = [p.parent for p in K8S.rglob("kustomization.yaml")]
    for d in kustomizations:
        k = kustomization(d)
        assert k["kind"] in ("Kustomization", "Component") and "bases" not in k
        refs = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", []) if "path" in p]
        for ref in refs:
            target = (d / ref).resolve()
            assert target.exists(), f"{d.relative_to(ROOT)}: {ref} does not exist"
            used.add(target if target.is_file() else target / "kustomization.yaml")
    for path in yaml_files():
        docs = load_yaml(path)
        assert docs, f"{path.relative_to(ROOT)} holds no document"
        if path.name != "kustomization.yaml":
            assert path.resolve() in used, f"{path.relative_to(ROOT)} is in no kustomization: it is never applied"
    entry = {str(d.relative_to(K8S)) for d in kustomizations if (d / "kustomization.yaml").resolve() not in used}
    assert entry == ENTRY_POINTS


def test_base_is_consistent_with_the_code():
    env = Env("base", list(base_objects()), external_secrets=True)
    loaded = check_environment(env, production=False)
    check_provision(env, loaded)


def test_placeholder_secrets_are_marked_and_not_development_defaults():
    for obj in base_objects():
        if obj["kind"] != "Secret":
            continue
        for key, value in (obj.get("stringData") or {}).items():
            assert "CHANGE-ME" in value, f"Secret {obj['metadata']['name']}: {key} is not a CHANGE-ME placeholder"
            assert not any(m in value for m in DEV_SECRET_MARKERS), f"{key}: a development default"
    for path in yaml_files():
        text = path.read_text()
        if re.search(r"^kind: Secret$", text, re.M) and "stringData" in text:
            assert "PLACEHOLDER SECRET" in text, f"{path.relative_to(ROOT)}: say that it holds placeholders"


def test_simulated_clock_only_in_the_dev_overlay():
    for path in yaml_files():
        rel = path.relative_to(K8S).as_posix()
        for doc in load_yaml(path):
            found = '"RAPPORT_CLOCK"' in json.dumps(doc)
            if found:
                assert rel.startswith("overlays/dev/"), f"{rel} sets RAPPORT_CLOCK"
                assert (doc.get("data") or {}).get("RAPPORT_CLOCK") == "simulated"
    dev = [d for d in load_yaml(K8S / "overlays/dev/simulated-clock.yaml")]
    clocked = {svc for svc in SERVICES if "RAPPORT_CLOCK" in env_names(settings_class(svc))}
    assert {d["metadata"]["name"] for d in dev} == {f"rapport-{svc}-config" for svc in clocked}


def overlay_patches(overlay: Path) -> list[tuple[dict, dict]]:
    """(patch entry, document) for each patch document of an overlay's kustomization."""
    out = []
    for entry in kustomization(overlay).get("patches", []):
        assert "path" in entry, f"{overlay.relative_to(ROOT)}: inline patches are not read by this test; use a file"
        out += [(entry, doc) for doc in load_yaml(overlay / entry["path"])]
    return out


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/production", "overlays/production/provision"])
def test_overlay_patches_target_base_objects_and_known_settings(overlay):
    """Without kustomize: a patch naming a missing object, or a setting no reader has, fails here."""
    base = {(o["kind"], o["metadata"]["name"]): o for o in base_objects()}
    readers: dict[str, set[str]] = {}  # ConfigMap name → services whose containers read it
    mounted: set[str] = set()  # ConfigMaps mounted as files (their keys are file names, not settings)
    for o in base_objects():
        if o["kind"] == "Deployment":
            svc = image_service(pod_spec(o)["containers"][0]["image"])
            for c in pod_spec(o)["containers"]:
                for ref in c.get("envFrom", []):
                    if "configMapRef" in ref:
                        readers.setdefault(ref["configMapRef"]["name"], set()).add(svc)
            mounted |= {v["configMap"]["name"] for v in pod_spec(o).get("volumes", []) if "configMap" in v}
    for entry, doc in overlay_patches(K8S / overlay):
        if doc.get("$patch") == "delete":
            assert entry.get("target", {}).get("kind") == doc["kind"] == "Secret"
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in base, f"{overlay}: patch for {key}, which base/ does not define"
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in mounted:
            assert set(doc.get("data", {})) <= set(base[key].get("data", {})), f"{overlay}: {key} gains a file"
        elif doc["kind"] == "ConfigMap":
            for name in doc.get("data", {}):
                for svc in readers[doc["metadata"]["name"]]:
                    assert name in env_names(settings_class(svc)), f"{overlay}: {name} is not a setting of {svc}"
        if doc["kind"] == "Deployment":
            svc = image_service(pod_spec(base[key])["containers"][0]["image"])
            patched = doc["spec"].get("template", {}).get("spec", {})
            for c in patched.get("containers", []) + patched.get("initContainers", []):
                for e in c.get("env", []):
                    assert e["name"] in env_names(settings_class(svc)), f"{overlay}: {e['name']} is not a setting of {svc}"


def test_production_overlay_files():
    prod = K8S / "overlays" / "production"
    common = [d for _, d in overlay_patches(prod) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rapport-common"]
    assert [d["data"].get("RAPPORT_ENVIRONMENT") for d in common] == ["production"]
    assert common[0]["data"].get("RAPPORT_AUTH_JWKS", "").startswith("https://"), \
        "production verifies tokens against the identity provider's JWKS URL"
    for _, d in overlay_patches(prod):  # and trusts no development key, even unused
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rapport-auth-jwks":
            assert not json.loads(d["data"]["jwks.json"])["keys"], "production: rapport-auth-jwks holds a key"
            break
    else:
        raise AssertionError("production must replace base/'s development JWKS (rapport-auth-jwks)")
    assert common[0]["data"].get("RAPPORT_KAFKA_SECURITY_PROTOCOL", "").startswith("SASL_")
    for directory in (prod, prod / "provision"):
        deletes = [e for e, d in overlay_patches(directory) if d.get("$patch") == "delete"]
        assert any(e.get("target") == {"kind": "Secret"} for e in deletes), f"{directory}: must delete every Secret"
    for path in prod.rglob("*.yaml"):
        text = path.read_text()
        assert not any(m in text for m in DEV_SECRET_MARKERS), f"{path.relative_to(ROOT)}: development secret"
    images = {i["name"]: i for i in kustomization(prod)["images"]}
    _, prefix = build_images_script()
    assert set(images) == {f"{prefix}/{svc}" for svc in SERVICES}
    for name, i in images.items():
        assert i.get("newTag") == service_version(name.split("/")[-1]), f"production pins {name} to the release"
    for i in kustomization(prod / "provision")["images"]:
        assert i == images[i["name"]], "provisioning and the services: the same image"


def test_compose_and_manifests_agree_on_the_http_ports():
    """The per-service RAPPORT_HTTP_PORT: docker-compose.yml, the ConfigMaps, the settings defaults."""
    compose = (ROOT / "docker-compose.yml").read_text()
    env = Env("base", list(base_objects()), external_secrets=True)
    for svc in SERVICES:
        block = compose.split(f"RAPPORT_SERVICE_NAME: {svc}\n", 1)[1]
        port = re.search(r'RAPPORT_HTTP_PORT: "(\d+)"', block).group(1)
        assert env.configmap_data(f"rapport-{svc}-config")["RAPPORT_HTTP_PORT"] == port
        assert settings_class(svc).model_fields["http_port"].default == int(port)


def test_image_user_matches_run_as_user():
    """runAsUser is the uid of the image's USER (a name in deploy/python-runtime.Dockerfile): asked of a built image."""
    docker = shutil.which("docker")
    if not docker:
        pytest.skip("docker is not installed: the image's uid cannot be read")
    deployments = Env("base", list(base_objects()), external_secrets=True).deployments()
    checked = 0
    for svc, dep in deployments.items():
        image = pod_spec(dep)["containers"][0]["image"]
        if subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode != 0:
            continue
        out = subprocess.run([docker, "run", "--rm", "--entrypoint", "id", image], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        uid, gid = (int(re.search(rf"{k}=(\d+)", out.stdout).group(1)) for k in ("uid", "gid"))
        psc = pod_spec(dep)["securityContext"]
        assert (psc["runAsUser"], psc["runAsGroup"]) == (uid, gid), f"{image} runs as {out.stdout.strip()}"
        checked += 1
    if not checked:
        pytest.skip("no service image is built here (deploy/build-images.sh --all)")


# --------------------------------------------------------------------------------------------
# Tests on what kustomize renders (skipped without kustomize or kubectl)


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@functools.cache
def render(entry: str) -> tuple[dict, ...]:
    cmd = kustomize_command()
    if cmd is None:
        pytest.skip("neither kustomize nor kubectl is on PATH: overlays not rendered (the file checks above still ran)")
    out = subprocess.run([*cmd, str(K8S / entry)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(cmd)} {entry} failed:\n{out.stderr[-3000:]}"
    return tuple(load_all(out.stdout))


def test_rendered_base_equals_the_files():
    """What the file checks read is what kustomize applies."""
    for entry in ("base", "base/shared/provision"):
        key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
        assert {key(o): o for o in render(entry)} == {key(o): o for o in collect(K8S / entry)}


def test_dev_overlay_renders_consistently():
    env = Env("overlays/dev", list(render("overlays/dev")) + list(render("overlays/dev/provision")))
    assert {o["metadata"].get("namespace") for o in env.objs} == {"rapport-dev"}
    loaded = check_environment(env, production=False)
    check_provision(env, loaded)
    for svc, settings in loaded.items():
        assert settings.environment == "development"
        if "clock" in type(settings).model_fields:
            assert settings.clock == "simulated", f"dev: {svc} follows the wall clock"


def test_production_overlay_renders_consistently():
    objs = list(render("overlays/production")) + list(render("overlays/production/provision"))
    env = Env("overlays/production", objs, external_secrets=True)
    assert {o["metadata"].get("namespace") for o in objs} == {"rapport"}
    assert not env.of_kind("Secret"), "production applies no Secret (placeholders would overwrite real ones)"
    text = json.dumps(objs)
    assert not any(m in text for m in DEV_SECRET_MARKERS)
    assert DEV_KID_PREFIX not in text, "production carries a development signing key's kid"
    assert env.configmap_data("rapport-common")["RAPPORT_ENVIRONMENT"] == "production"
    loaded = check_environment(env, production=True)
    check_provision(env)
    for svc, settings in loaded.items():
        assert settings.environment == "production"
        assert getattr(settings, "clock", "system") == "system", f"production: {svc} on a simulated clock"
        sec = settings.kafka_security()
        assert sec.enabled and sec.sasl_username == svc, f"production: {svc} must authenticate as User:{svc}"
        assert settings.topic_replication >= 3
    for dep in env.of_kind("Deployment"):
        for c in pod_spec(dep)["containers"] + pod_spec(dep).get("initContainers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                assert not (ref and ref.get("optional")), f"production: {e['name']} must not be optional"
        assert dep["spec"]["replicas"] >= 2
    for pdb in env.of_kind("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert any(sel.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in env.of_kind("Deployment"))


def test_service_monitor_scrapes_metrics_with_a_bearer_token():
    (sm,) = render("monitoring")
    assert sm["kind"] == "ServiceMonitor"
    services = Env("overlays/production", list(render("overlays/production"))).of_kind("Service")
    selector = sm["spec"]["selector"]["matchLabels"]
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert len(selected) == len(SERVICES)
    (endpoint,) = sm["spec"]["endpoints"]
    for s in selected:
        assert endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    for svc in SERVICES:
        assert "/metrics" in app_paths(svc, ())
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials"]["name"] and auth["credentials"]["key"]
