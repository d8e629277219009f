"""Bearer tokens that services verify but cannot mint (issue #10, item 5): ES256 against a JWKS,
the refusals (alg none, expired, unknown key, another audience, too long a lifetime), rotation (two
keys; a JWKS file re-read when it changes), production's refusals (an HMAC secret, no JWKS, the
development key), and `rapport-admin` as the development issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from rapport_tools import admin as cli
from rapport_shared.http.app import token_verifier
from rapport_shared.http.auth import (DEV_KID_PREFIX, JwksSource, TokenAuthority, TokenIssuer, TokenVerifier,
                                      require)
from rapport_shared.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
DEV_KEYS = ROOT / "deploy" / "dev-keys"
KEY_1 = TokenIssuer.generate("unit-key-1")
KEY_2 = TokenIssuer.generate("unit-key-2")


def write_jwks(path: Path, *issuers: TokenIssuer) -> Path:
    """Write a JWKS and give it a new mtime (a rewrite within the file system's timestamp
    granularity must still count as a change)."""
    stamp = path.stat().st_mtime_ns + 1_000_000_000 if path.exists() else None
    path.write_text(json.dumps({"keys": [i.public_jwk() for i in issuers]}))
    if stamp is not None:
        os.utime(path, ns=(stamp, stamp))
    return path


@pytest.fixture
def jwks_path(tmp_path) -> Path:
    return write_jwks(tmp_path / "jwks.json", KEY_1)


@pytest.fixture
def verifier(jwks_path) -> TokenVerifier:
    return TokenVerifier(jwks=JwksSource(str(jwks_path)))


# ---- verification --------------------------------------------------------------------------------

def test_valid_es256_token_verifies_with_its_org(verifier):
    p = verifier.verify(KEY_1.issue("clin-1", ["clinician"], org="org-a"))
    assert (p.sub, p.roles, p.org) == ("clin-1", frozenset({"clinician"}), "org-a")
    assert jwt.get_unverified_header(KEY_1.issue("x", ["admin"]))["alg"] == "ES256"


def test_alg_none_is_refused(verifier):
    now = int(datetime.now(timezone.utc).timestamp())
    claims = {"sub": "x", "roles": ["admin"], "iss": "rapport", "aud": "rapport", "iat": now, "exp": now + 600}
    token = jwt.encode(claims, None, algorithm="none", headers={"kid": KEY_1.kid})
    with pytest.raises(jwt.InvalidTokenError, match="not accepted"):
        verifier.verify(token)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_hs256_signed_with_the_public_key_is_refused(verifier):
    """Algorithm confusion: a JWKS verifier never takes HMAC, whatever secret was used (here the
    published key itself; PyJWT refuses to make such a token, so it is made by hand)."""
    now = int(datetime.now(timezone.utc).timestamp())
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KEY_1.kid}).encode())
    body = b64(json.dumps({"sub": "x", "roles": ["admin"], "iss": "rapport", "aud": "rapport", "iat": now,
                           "exp": now + 600}).encode())
    sig = hmac.new(json.dumps(KEY_1.public_jwk()).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(jwt.InvalidTokenError, match="not accepted"):
        verifier.verify(f"{head}.{body}.{b64(sig)}")


def test_expired_token_is_refused(verifier):
    token = KEY_1.issue("x", ["admin"], ttl=timedelta(hours=1), now=datetime.now(timezone.utc) - timedelta(hours=2))
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.verify(token)


def test_token_of_an_unknown_key_is_refused(verifier):
    with pytest.raises(jwt.InvalidTokenError, match="unknown key id"):
        verifier.verify(KEY_2.issue("x", ["admin"]))


def test_token_of_another_key_under_a_known_kid_is_refused(verifier):
    impostor = TokenIssuer(KEY_2.private_key, KEY_1.kid)
    with pytest.raises(jwt.InvalidSignatureError):
        verifier.verify(impostor.issue("x", ["admin"]))


def test_right_key_for_another_audience_is_refused(verifier):
    with pytest.raises(jwt.InvalidAudienceError):
        verifier.verify(KEY_1.issue("x", ["admin"], audience="another-system"))


def test_right_key_of_another_issuer_is_refused(verifier):
    with pytest.raises(jwt.InvalidIssuerError):
        verifier.verify(KEY_1.issue("x", ["admin"], issuer="someone-else"))


def test_lifetime_over_the_maximum_is_refused(jwks_path):
    v = TokenVerifier(jwks=JwksSource(str(jwks_path)), max_lifetime=timedelta(hours=12))
    assert v.verify(KEY_1.issue("x", ["metrics"], ttl=timedelta(hours=12))).sub == "x"
    with pytest.raises(jwt.InvalidTokenError, match="lifetime exceeds 43200 s"):
        v.verify(KEY_1.issue("x", ["metrics"], ttl=timedelta(hours=12, minutes=1)))


def test_two_keys_in_the_jwks_both_verify(tmp_path):
    """A rotation: old and new key published together, tokens of either accepted."""
    v = TokenVerifier(jwks=JwksSource(str(write_jwks(tmp_path / "jwks.json", KEY_1, KEY_2))))
    assert v.verify(KEY_1.issue("old", ["admin"])).sub == "old"
    assert v.verify(KEY_2.issue("new", ["admin"])).sub == "new"


def test_a_jwks_file_changed_on_disk_is_read_again(jwks_path, verifier):
    """Rotation without a restart: publish the new key, then retire the old one."""
    old_token = KEY_1.issue("old", ["admin"])
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(KEY_2.issue("new", ["admin"]))
    write_jwks(jwks_path, KEY_1, KEY_2)
    assert verifier.verify(KEY_2.issue("new", ["admin"])).sub == "new"
    assert verifier.verify(old_token).sub == "old"


def test_a_key_removed_from_the_jwks_file_is_refused_without_a_restart(jwks_path, verifier):
    old_token = KEY_1.issue("old", ["admin"])
    assert verifier.verify(old_token).sub == "old"
    write_jwks(jwks_path, KEY_2)  # the old key retired after the rotation
    with pytest.raises(jwt.InvalidTokenError, match="unknown key id"):
        verifier.verify(old_token)


@pytest.mark.parametrize("doc, message", [
    ({"keys": []}, "holds no key"),
    ({"keys": [KEY_1.private_jwk()]}, "not a public EC/RSA key"),
    ({"keys": [{**KEY_1.public_jwk(), "kid": ""}]}, "needs a kid"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, "not a public EC/RSA key"),
])
def test_a_malformed_jwks_is_refused(tmp_path, doc, message):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        JwksSource(str(path))


def test_a_plain_http_jwks_url_is_refused():
    with pytest.raises(ValueError, match="https"):
        JwksSource("http://idp.example/jwks.json")


# ---- the FastAPI dependency ------------------------------------------------------------------------

@pytest.fixture
def client(verifier):
    app = FastAPI()
    app.state.token_verifier = verifier

    @app.get("/clinical")
    async def clinical(who=Depends(require("clinician"))):
        return {"sub": who.sub, "org": who.org}

    return TestClient(app)


def test_endpoint_with_a_valid_token(client):
    r = client.get("/clinical", headers={"Authorization": f"Bearer {KEY_1.issue('c-1', ['clinician'], org='org-a')}"})
    assert r.status_code == 200 and r.json() == {"sub": "c-1", "org": "org-a"}


def test_missing_token_is_401(client):
    r = client.get("/clinical")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", [
    "garbage",
    KEY_2.issue("c-1", ["clinician"]),  # unknown key
    KEY_1.issue("c-1", ["clinician"], ttl=timedelta(hours=1), now=datetime.now(timezone.utc) - timedelta(hours=2)),
    KEY_1.issue("c-1", ["clinician"], audience="elsewhere"),
    TokenAuthority("unit-secret-0123456789abcdef0123456789").issue("c-1", ["clinician"]),  # HS256
])
def test_bad_tokens_are_401(client, token):
    assert client.get("/clinical", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_wrong_role_is_403(client):
    r = client.get("/clinical", headers={"Authorization": f"Bearer {KEY_1.issue('p-1', ['partner'])}"})
    assert r.status_code == 403 and "clinician" in r.json()["detail"]


# ---- settings: what production refuses ------------------------------------------------------------

# What production also requires (tests/unit/shared/test_production_refusals.py): verified TLS to
# Postgres and SASL_SSL to Kafka, so the token checks below are the only thing each test varies.
PRODUCTION_TRANSPORT = dict(database_dsn="postgresql://u:p@db:5432/rapport?sslmode=verify-full",
                            kafka_security_protocol="SASL_SSL", kafka_sasl_username="intake")


def settings(**kw) -> ServiceSettings:
    if kw.get("environment") == "production":
        kw = {**PRODUCTION_TRANSPORT, **kw}
    return ServiceSettings(service_name="intake", **kw)


def test_production_refuses_an_hmac_secret(jwks_path):
    with pytest.raises(ValueError, match="production refuses RAPPORT_AUTH_SECRET"):
        settings(environment="production", auth_secret="a-real-looking-secret-0123456789abcdef", auth_jwks=str(jwks_path))


def test_production_refuses_an_hmac_secret_from_the_environment(monkeypatch, jwks_path):
    monkeypatch.setenv("RAPPORT_ENVIRONMENT", "production")
    monkeypatch.setenv("RAPPORT_AUTH_SECRET", "a-real-looking-secret-0123456789abcdef")
    monkeypatch.setenv("RAPPORT_AUTH_JWKS", str(jwks_path))
    with pytest.raises(ValueError, match="production refuses RAPPORT_AUTH_SECRET"):
        ServiceSettings(service_name="intake")


def test_production_needs_a_jwks():
    with pytest.raises(ValueError, match="production needs RAPPORT_AUTH_JWKS"):
        settings(environment="production")


def test_production_refuses_a_plain_http_jwks_url():
    with pytest.raises(ValueError, match="https"):
        settings(environment="production", auth_jwks="http://idp.example/jwks.json")


def test_production_refuses_the_development_jwks():
    s = settings(environment="production", auth_jwks=str(DEV_KEYS / "jwks.json"))
    with pytest.raises(RuntimeError, match="production refuses the development signing key"):
        token_verifier(s)


def test_production_with_the_issuers_jwks_verifies(jwks_path):
    v = token_verifier(settings(environment="production", auth_jwks=str(jwks_path), auth_max_token_lifetime_s=3600))
    assert v.hmac_secret is None
    assert v.verify(KEY_1.issue("x", ["admin"], ttl=timedelta(minutes=30), org="org-a")).org == "org-a"
    with pytest.raises(jwt.InvalidTokenError, match="lifetime"):
        v.verify(KEY_1.issue("x", ["admin"], ttl=timedelta(hours=2)))


def test_development_accepts_the_development_jwks():
    v = token_verifier(settings(auth_jwks=str(DEV_KEYS / "jwks.json")))
    dev = TokenIssuer.from_file(DEV_KEYS / "issuer.jwk.json")
    assert v.verify(dev.issue("x", ["admin"], org="org-a")).org == "org-a"
    assert v.hmac_secret is None, "with a JWKS the development HMAC secret is not accepted either"


def test_the_committed_development_keys_are_a_pair():
    private = json.loads((DEV_KEYS / "issuer.jwk.json").read_text())
    public = json.loads((DEV_KEYS / "jwks.json").read_text())
    assert private["kid"] == "rapport-dev-1" and private["kid"].startswith(DEV_KID_PREFIX) and "d" in private
    assert [k["kid"] for k in public["keys"]] == ["rapport-dev-1"] and all("d" not in k for k in public["keys"])
    assert public == cli.merge_jwks([DEV_KEYS / "issuer.jwk.json"])
    assert "production refuses" in (DEV_KEYS / "README.md").read_text()


def test_a_service_started_in_production_with_an_hmac_secret_exits_with_a_clear_error(tmp_path, jwks_path):
    """The process, not just the settings: it refuses before touching Kafka or Postgres."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update({
        "RAPPORT_ENVIRONMENT": "production",
        "RAPPORT_AUTH_SECRET": "a-real-looking-secret-0123456789abcdef",
        "RAPPORT_AUTH_JWKS": str(jwks_path),
        # Valid, non-development contacts keys: the auth secret is the only thing wrong.
        "RAPPORT_CONTACTS_KEYS": json.dumps({"k1": base64.b64encode(b"unit-test-contacts-key-012345678").decode()}),
        "RAPPORT_CONTACTS_ACTIVE_KEY": "k1",
        "RAPPORT_DATABASE_DSN": "postgresql://nobody:nothing@127.0.0.1:1/none",
        "RAPPORT_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    })
    out = subprocess.run([sys.executable, "-m", "rapport_intake", "run"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("rapport-intake: refusing to start: production refuses RAPPORT_AUTH_SECRET"), \
        out.stderr[-2000:]
    assert "a-real-looking-secret" not in out.stderr + out.stdout, "the error must not print the secret"


# ---- rapport-admin: the development issuer -----------------------------------------------------------

def admin(capsys, *argv: str) -> str:
    assert cli.admin_main(list(argv)) == 0
    return capsys.readouterr().out.strip()


def test_rapport_admin_token_is_verified_by_the_jwks(tmp_path, capsys):
    key = tmp_path / "issuer.jwk.json"
    key.write_text(json.dumps(KEY_1.private_jwk()))
    token = admin(capsys, "token", "--key", str(key), "--sub", "x", "--role", "admin", "--org", "org-a")
    p = TokenVerifier(jwks=JwksSource(str(write_jwks(tmp_path / "jwks.json", KEY_1)))).verify(token)
    assert (p.sub, p.roles, p.org) == ("x", frozenset({"admin"}), "org-a")


def test_rapport_admin_token_defaults_to_the_development_key(capsys, monkeypatch):
    monkeypatch.delenv("RAPPORT_AUTH_SIGNING_KEY", raising=False)
    assert cli.default_signing_key() == DEV_KEYS / "issuer.jwk.json"
    token = cli.admin_main(["token", "--sub", "x", "--role", "clinician", "--org", "org-b"])
    captured = capsys.readouterr()
    assert token == 0 and "development key" in captured.err
    v = token_verifier(settings(auth_jwks=str(DEV_KEYS / "jwks.json")))
    assert v.verify(captured.out.strip()).org == "org-b"


def test_rapport_admin_token_takes_the_key_from_the_environment(tmp_path, capsys, monkeypatch):
    key = tmp_path / "k.jwk.json"
    key.write_text(json.dumps(KEY_2.private_jwk()))
    monkeypatch.setenv("RAPPORT_AUTH_SIGNING_KEY", str(key))
    token = admin(capsys, "token", "--sub", "x", "--role", "admin", "--audience", "rapport-staging")
    assert jwt.get_unverified_header(token)["kid"] == KEY_2.kid
    v = TokenVerifier(jwks=JwksSource(str(write_jwks(tmp_path / "jwks.json", KEY_2))), audience="rapport-staging")
    assert v.verify(token).sub == "x"


def test_rapport_admin_token_hours_are_capped_by_the_services_maximum(tmp_path, capsys, monkeypatch):
    key = tmp_path / "k.jwk.json"
    key.write_text(json.dumps(KEY_1.private_jwk()))
    monkeypatch.delenv("RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.admin_main(["token", "--key", str(key), "--sub", "prometheus", "--role", "metrics", "--hours", "2160"])
    assert exc.value.code == 2 and "RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S" in capsys.readouterr().err
    # A longer-lived metrics token: raise the services' maximum (and rapport-admin's, the same variable).
    monkeypatch.setenv("RAPPORT_AUTH_MAX_TOKEN_LIFETIME_S", str(7 * 24 * 3600))
    token = admin(capsys, "token", "--key", str(key), "--sub", "prometheus", "--role", "metrics", "--hours", "168")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 168 * 3600
    v = TokenVerifier(jwks=JwksSource(str(write_jwks(tmp_path / "jwks.json", KEY_1))), max_lifetime=timedelta(days=7))
    assert v.verify(token).roles == frozenset({"metrics"})


def test_rapport_admin_token_with_a_secret_is_hs256_for_development(capsys):
    secret = "unit-secret-0123456789abcdef0123456789"
    token = admin(capsys, "token", "--secret", secret, "--sub", "x", "--role", "admin", "--org", "org-a")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert TokenAuthority(secret).verify(token).org == "org-a"


def test_rapport_admin_keys_new_and_jwks_for_a_rotation(tmp_path, capsys):
    keys, jwks = tmp_path / "keys", tmp_path / "jwks.json"
    first = json.loads(admin(capsys, "keys", "new", "--kid", "prod-2026-01", "--out", str(keys), "--jwks", str(jwks)))
    assert [k["kid"] for k in first["keys"]] == ["prod-2026-01"]
    assert oct((keys / "prod-2026-01.jwk.json").stat().st_mode & 0o777) == "0o600"
    source = JwksSource(str(jwks))
    admin(capsys, "keys", "new", "--kid", "prod-2026-02", "--out", str(keys), "--jwks", str(jwks))
    assert json.loads(jwks.read_text()) == cli.merge_jwks([keys / "prod-2026-01.jwk.json", keys / "prod-2026-02.jwk.json"])
    merged = json.loads(admin(capsys, "keys", "jwks", str(keys / "prod-2026-01.jwk.json"), str(keys / "prod-2026-02.jwk.json")))
    assert merged == json.loads(jwks.read_text())
    assert all(set(k) <= {"kty", "crv", "x", "y", "kid", "alg", "use"} for k in merged["keys"]), "private parts published"
    # Both keys valid during the rotation, with the JwksSource made before the second was added.
    v = TokenVerifier(jwks=source)
    for kid in ("prod-2026-01", "prod-2026-02"):
        token = admin(capsys, "token", "--key", str(keys / f"{kid}.jwk.json"), "--sub", kid, "--role", "admin")
        assert v.verify(token).sub == kid
    # A key file is never overwritten.
    with pytest.raises(SystemExit):
        cli.admin_main(["keys", "new", "--kid", "prod-2026-01", "--out", str(keys)])
    assert "never overwritten" in capsys.readouterr().err


def test_rapport_admin_keys_jwks_refuses_two_keys_under_one_kid(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(KEY_1.public_jwk()))
    b.write_text(json.dumps(TokenIssuer(KEY_2.private_key, KEY_1.kid).private_jwk()))
    with pytest.raises(SystemExit):
        cli.admin_main(["keys", "jwks", str(a), str(b)])
    assert "two different keys" in capsys.readouterr().err
