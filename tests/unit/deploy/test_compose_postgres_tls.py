"""The secure compose profile talks to Postgres over verified TLS (issue 17, item 4).

docker-compose.yml with the docker-compose.secure.yml override, merged as compose merges an
override (``environment`` key by key, ``volumes`` by container path): every container that has a
Postgres DSN (``RAPPORT_DATABASE_DSN``; db-init's ``RAPPORT_ADMIN_DSN``) asks for
``sslmode=verify-full`` (or ``verify-ca``) and an ``sslrootcert`` inside a read-only mount of the
volume postgres publishes its CA certificate into; the postgres service serves TLS
(``POSTGRES_TLS=1``) with a certificate naming the host the DSNs use; pg-run.sh then accepts TCP only
over TLS. The plain compose file stays without TLS. When ``docker-compose`` is on PATH, its own
``config`` output is checked the same way (so the merge here cannot hide a mistake).
tests/integration/security/test_postgres_tls.py runs the image itself.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "docker-compose.yml"
SECURE = ROOT / "docker-compose.secure.yml"
PG_RUN = ROOT / "deploy" / "postgres" / "pg-run.sh"
DSN_VARS = ("RAPPORT_DATABASE_DSN", "RAPPORT_ADMIN_DSN")
SERVICES = ("intake", "scheduler", "outcomes", "notifier")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _interpolate(value):
    """${VAR:-default} -> default, ${VAR} -> "" (an environment without overrides)."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(svc: dict) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for entry in svc.get("volumes") or []:
        parts = entry.split(":")
        source, target = parts[0], parts[1]
        out.append((source, target, parts[2] if len(parts) > 2 else "rw"))
    return out


def _merge(base: dict, override: dict) -> dict:
    """The override merge of compose 1.29 for what is checked here."""
    merged = copy.deepcopy(base)
    for name, svc in (override.get("services") or {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in svc.items():
            if key == "environment":
                target["environment"] = {**_env(target), **_env(svc)}
            elif key == "volumes":
                by_path = {m[1]: entry for m, entry in zip(_mounts(target), target.get("volumes") or [])}
                by_path.update({m[1]: entry for m, entry in zip(_mounts(svc), value)})
                target["volumes"] = list(by_path.values())
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = copy.deepcopy(value)
    merged["volumes"] = {**(base.get("volumes") or {}), **(override.get("volumes") or {})}
    return merged


def _load(path: Path) -> dict:
    return _interpolate(yaml.safe_load(path.read_text()))


def _merged_here() -> dict:
    return _merge(_load(BASE), _load(SECURE))


def _merged_by_compose() -> dict:
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose is not on PATH: only the merge of this test is checked")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home())}  # no RAPPORT_* overrides
    out = subprocess.run([exe, "-p", "rapport-config-check", "-f", str(BASE), "-f", str(SECURE), "config"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=True)
    return yaml.safe_load(out.stdout)


def _ca_volume(config: dict) -> tuple[str, str]:
    """The named volume postgres publishes ca.pem into, and the file name clients must use."""
    pg = config["services"]["postgres"]
    publish = _env(pg).get("POSTGRES_TLS_PUBLISH_DIR")
    assert publish, "postgres must publish its CA certificate (POSTGRES_TLS_PUBLISH_DIR)"
    sources = [src for src, target, _ in _mounts(pg) if target == publish]
    assert sources, f"POSTGRES_TLS_PUBLISH_DIR {publish} is not a volume of the postgres service"
    assert sources[0] in (config.get("volumes") or {}), f"{sources[0]} must be a named volume, declared"
    return sources[0], "ca.pem"


def _check_secure(config: dict) -> dict[str, str]:
    services = config["services"]
    pg_env = _env(services["postgres"])
    assert pg_env.get("POSTGRES_TLS") in ("1", "true", "yes"), "postgres must serve TLS in the secure profile"
    sans = [s.strip() for s in pg_env.get("POSTGRES_TLS_SANS", "").split(",") if s.strip()]
    volume, ca_name = _ca_volume(config)
    # The private keys stay in pgdata: the published volume is not the data directory.
    assert not any(src == volume and target.startswith("/var/lib/postgresql/data")
                   for src, target, _ in _mounts(services["postgres"]))

    checked: dict[str, str] = {}
    for name, svc in services.items():
        env = _env(svc)
        for var in DSN_VARS:
            if var not in env:
                continue
            dsn = urlsplit(env[var])
            query = dict(parse_qsl(dsn.query))
            assert query.get("sslmode") in ("verify-full", "verify-ca"), f"{name}: {var} without verified TLS: {env[var]}"
            root = query.get("sslrootcert", "")
            assert root.startswith("/"), f"{name}: {var} needs sslrootcert=<absolute path of the CA file>"
            mounts = [(src, target, mode) for src, target, mode in _mounts(svc)
                      if root.startswith(target.rstrip("/") + "/")]
            assert mounts, f"{name}: sslrootcert {root} is not inside any volume of the container"
            src, target, mode = mounts[-1]
            assert src == volume, f"{name}: {root} comes from {src}, not from the CA volume {volume}"
            assert root == f"{target.rstrip('/')}/{ca_name}", f"{name}: {root} is not the published {ca_name}"
            assert mode == "ro", f"{name}: the CA volume must be mounted read-only"
            if query["sslmode"] == "verify-full" and dsn.hostname not in ("localhost", "127.0.0.1"):
                assert f"DNS:{dsn.hostname}" in sans, (
                    f"{name}: verify-full to {dsn.hostname} needs DNS:{dsn.hostname} in POSTGRES_TLS_SANS ({sans})")
            checked[f"{name}.{var}"] = query["sslmode"]
    return checked


def _expected_dsn_holders() -> set[str]:
    base = _load(BASE)["services"]
    return {f"{n}.{v}" for n, s in base.items() for v in DSN_VARS if v in _env(s)}


def test_every_dsn_of_the_secure_profile_verifies_postgres_tls():
    checked = _check_secure(_merged_here())
    expected = _expected_dsn_holders()
    # db-init, the four migrations and the four services — none is left on plain TCP.
    assert expected == set(checked), expected ^ set(checked)
    assert {f"{s}.RAPPORT_DATABASE_DSN" for s in SERVICES} | {f"{s}-migrate.RAPPORT_DATABASE_DSN" for s in SERVICES} \
        | {"db-init.RAPPORT_ADMIN_DSN"} <= set(checked)
    assert set(checked.values()) == {"verify-full"}, checked  # the certificate names `postgres`


def test_docker_compose_merges_it_the_same_way():
    checked = _check_secure(_merged_by_compose())
    assert set(checked) == _expected_dsn_holders()


def test_the_plain_profile_stays_without_tls():
    base = _load(BASE)
    assert "POSTGRES_TLS" not in _env(base["services"]["postgres"])
    for name, svc in base["services"].items():
        for var in DSN_VARS:
            if var in _env(svc):
                assert "sslmode" not in _env(svc)[var], name


def test_pg_run_refuses_tcp_without_tls_when_tls_is_on():
    """The hba file pg-run.sh writes with POSTGRES_TLS=1: hostssl (scram) for every role, hostnossl
    rejected, no `host` line (which would also match a connection without TLS)."""
    text = PG_RUN.read_text()
    block = text[text.index('hba="$PGDATA/pg_hba.tls.conf"'):text.index('mv -f "$hba.tmp" "$hba"')]
    lines = [re.sub(r"\s+", " ", m) for m in re.findall(r'echo "((?:local|host)[^"]*)"', block)]
    assert "hostssl all all 0.0.0.0/0 scram-sha-256" in lines and "hostssl all all ::/0 scram-sha-256" in lines
    assert "hostnossl all all 0.0.0.0/0 reject" in lines and "hostnossl all all ::/0 reject" in lines
    assert not [line for line in lines if line.startswith("host ")], lines
    assert '-c hba_file="$hba"' in text and "-c ssl=on" in text
