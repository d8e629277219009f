"""Postgres over verified TLS, as the secure compose profile runs it (issue 17, item 4).

The rapport/postgres image with ``POSTGRES_TLS=1`` (deploy/postgres/pg-run.sh): a development CA
and a server certificate made at first start, ca.pem published in ``POSTGRES_TLS_PUBLISH_DIR``,
TCP accepted only over TLS. Real asyncpg clients (the services' driver, the DSN form of
docker-compose.secure.yml): ``sslmode=verify-full`` + ``sslrootcert`` connects and
``pg_stat_ssl`` says so, for the admin and a provisioned service role, through the services' own
pool; ``sslmode=disable`` is refused for a service role; a client that does not trust the CA, or
asks verify-full of a name the certificate lacks, is refused; a restart keeps the CA.
"""

from __future__ import annotations

import datetime
import os
import ssl
import time
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rapport_shared import db
from rapport_testing.infra import (
    POSTGRES_IMAGE,
    InfraError,
    _remove_container,
    _start_container,
    _wait_postgres,
    docker_available,
    free_port,
)

pytestmark = pytest.mark.integration

PUBLISH = "/var/lib/postgresql/ca"
OTHER_LOOPBACK = "127.0.0.2"  # also served, but not in the certificate: verify-full must refuse it


def _read_file(container, path: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc, out = container.get_wrapped_container().exec_run(["cat", path])
        if rc == 0 and out.startswith(b"-----BEGIN CERTIFICATE-----"):
            return out
        time.sleep(0.2)
    raise InfraError(f"{path} did not appear in the postgres container within {timeout}s "
                     "(an image from before POSTGRES_TLS? run: bash deploy/build-images.sh --infra-only)")


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory):
    if os.environ.get("RAPPORT_TEST_NO_DOCKER") == "1" or (os.environ.get("RAPPORT_TEST_POSTGRES_DSN") and not docker_available()):
        pytest.skip("Postgres with TLS needs the rapport/postgres container; no Docker engine (local-infra mode)")
    port = free_port()
    container = _start_container(POSTGRES_IMAGE, {
        "PGPORT": str(port),
        "POSTGRES_LISTEN": f"127.0.0.1,{OTHER_LOOPBACK}",
        "POSTGRES_PASSWORD": "postgres",
        "POSTGRES_DB": "rapport",
        "POSTGRES_FAST": "1",
        "POSTGRES_TLS": "1",
        "POSTGRES_TLS_SANS": "DNS:postgres",
        "POSTGRES_TLS_PUBLISH_DIR": PUBLISH,
    }, "postgres")
    try:
        ca = tmp_path_factory.mktemp("pgtls") / "ca.pem"
        ca.write_bytes(_read_file(container, f"{PUBLISH}/ca.pem"))
        admin = f"postgresql://postgres:postgres@127.0.0.1:{port}/rapport?sslmode=verify-full&sslrootcert={ca}"
        _wait_postgres(admin, 60, container)
        yield {"container": container, "port": port, "ca": ca, "admin": admin}
    finally:
        _remove_container(container.get_wrapped_container())


def _dsn(pg, user: str, password: str, query: str, host: str = "127.0.0.1") -> str:
    return f"postgresql://{user}:{password}@{host}:{pg['port']}/rapport?{query}"


async def _ssl_row(dsn: str) -> dict:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return dict(await conn.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def service_role(tls_postgres):
    await db.provision(tls_postgres["admin"], "rapport", "intake", "intake-tls-password")
    return "rapport_intake", "intake-tls-password"


def _other_ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the Rapport CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


async def test_verify_full_connects_over_tls(tls_postgres, service_role):
    ca = tls_postgres["ca"]
    for host in ("127.0.0.1", "localhost"):
        row = await _ssl_row(_dsn(tls_postgres, "postgres", "postgres", f"sslmode=verify-full&sslrootcert={ca}", host))
        assert row["ssl"] is True and row["version"] in ("TLSv1.2", "TLSv1.3"), row
    user, password = service_role
    row = await _ssl_row(_dsn(tls_postgres, user, password, f"sslmode=verify-full&sslrootcert={ca}"))
    assert row["ssl"] is True


async def test_the_services_pool_connects_over_tls(tls_postgres, service_role):
    user, password = service_role
    pool = await db.create_pool(_dsn(tls_postgres, user, password, f"sslmode=verify-full&sslrootcert={tls_postgres['ca']}"),
                                "intake", min_size=2, max_size=2)
    try:
        rows = await pool.fetch("SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = $1", user)
        assert rows and all(r["ssl"] for r in rows), rows
    finally:
        await pool.close()


async def test_a_connection_without_tls_is_refused(tls_postgres, service_role):
    user, password = service_role
    for who, pw in ((user, password), ("postgres", "postgres")):
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
            await asyncpg.connect(_dsn(tls_postgres, who, pw, "sslmode=disable"), timeout=10)


async def test_an_untrusted_certificate_or_another_name_is_refused(tls_postgres, service_role, tmp_path):
    user, password = service_role
    other = _other_ca(tmp_path / "other-ca.pem")
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(_dsn(tls_postgres, user, password, f"sslmode=verify-full&sslrootcert={other}"), timeout=10)
    ca = tls_postgres["ca"]
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)mismatch|doesn't match|not valid for"):
        await asyncpg.connect(_dsn(tls_postgres, user, password, f"sslmode=verify-full&sslrootcert={ca}", OTHER_LOOPBACK),
                              timeout=10)
    # verify-ca checks the chain only: the same name passes it.
    row = await _ssl_row(_dsn(tls_postgres, user, password, f"sslmode=verify-ca&sslrootcert={ca}", OTHER_LOOPBACK))
    assert row["ssl"] is True


def test_the_ca_survives_a_restart(tls_postgres):
    container = tls_postgres["container"]
    before = tls_postgres["ca"].read_bytes()
    container.get_wrapped_container().restart(timeout=10)
    assert _read_file(container, f"{PUBLISH}/ca.pem") == before
    _wait_postgres(tls_postgres["admin"], 60, container)
    logs = container.get_wrapped_container().logs().decode(errors="replace")
    assert logs.count("made a development CA") == 1 and logs.count("TLS on;") == 2, logs[-2000:]
