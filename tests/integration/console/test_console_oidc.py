"""Production sign-in against a stand-in OpenID Connect provider (``httpx.MockTransport``; its keys
a ``TokenIssuer``): authorization code + PKCE (S256), state and nonce checked, the ID token for the
console's client id, the access token for Rapport's audience verified like any bearer token and
kept as the session. Wrong state, a verifier that does not match the challenge, or a nonce of
another sign-in: no session."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from rapport_console import bootstrap
from rapport_console.adapters.oidc import OidcClient
from rapport_console.settings import ConsoleSettings
from rapport_shared.http.auth import TokenIssuer

pytestmark = pytest.mark.integration

IDP = "https://idp.test/realms/rapport"
CLIENT, SECRET = "rapport-console", "console-client-secret"
REDIRECT = "https://console.test/sign-in/callback"


class Provider:
    def __init__(self) -> None:
        self.keys = TokenIssuer.generate("idp-key-1", issuer=IDP, audience="rapport")
        self.challenge: str | None = None
        self.nonce: str | None = None
        self.nonce_override: str | None = None
        self.token_requests: list[dict] = []

    def id_token(self, nonce: str) -> str:
        now = datetime.now(timezone.utc)
        return jwt.encode({"sub": "clin-oidc", "aud": CLIENT, "iss": IDP, "nonce": nonce, "iat": int(now.timestamp()),
                           "exp": int((now + timedelta(minutes=5)).timestamp())}, self.keys.private_key,
                          algorithm="ES256", headers={"kid": self.keys.kid})

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(urlsplit(IDP).path)
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": IDP, "authorization_endpoint": f"{IDP}/auth",
                                             "token_endpoint": f"{IDP}/token", "jwks_uri": f"{IDP}/certs"})
        if path == "/certs":
            return httpx.Response(200, json=self.keys.jwks())
        if path == "/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.token_requests.append(form)
            basic = base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()
            verifier_ok = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                                                   ).rstrip(b"=").decode() == self.challenge
            if (request.headers.get("authorization") != f"Basic {basic}" or form.get("code") != "the-code"
                    or form.get("redirect_uri") != REDIRECT or not verifier_ok):
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json={
                "token_type": "Bearer", "id_token": self.id_token(self.nonce_override or self.nonce),
                "access_token": self.keys.issue("clin-oidc", ["clinician"], org="org-test")})
        return httpx.Response(404)


@pytest.fixture
async def oidc_console(console, tmp_path):
    provider = Provider()
    jwks = tmp_path / "idp-jwks.json"
    jwks.write_text(json.dumps(provider.keys.jwks()))
    settings = ConsoleSettings(database_dsn=console.app.state.runtime.settings.database_dsn,
                               db_schema=console.app.state.runtime.settings.db_schema, environment="test",
                               auth_jwks=str(jwks), auth_issuer=IDP, auth_audience="rapport", cookie_secure=False,
                               session_secret="it-oidc", sign_in="oidc", oidc_issuer=IDP, oidc_client_id=CLIENT,
                               oidc_client_secret=SECRET, oidc_redirect_uri=REDIRECT)
    app = bootstrap.build(settings)
    app.state.runtime.pool = console.pool  # the same schema; nothing of the runtime but the pool is needed
    app.state.oidc = OidcClient(issuer=IDP, client_id=CLIENT, client_secret=SECRET, redirect_uri=REDIRECT,
                                transport=httpx.MockTransport(provider.handler))
    return app, provider


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test")


async def start(c: httpx.AsyncClient, provider: Provider) -> dict[str, str]:
    r = await c.get("/sign-in/oidc")
    assert r.status_code == 303 and r.headers["location"].startswith(f"{IDP}/auth?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    assert (q["response_type"], q["client_id"], q["redirect_uri"], q["code_challenge_method"]) == (
        "code", CLIENT, REDIRECT, "S256")
    assert "openid" in q["scope"].split() and len(q["state"]) >= 20 and len(q["nonce"]) >= 20
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and "_oidc=" in v][0]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/sign-in/callback" in cookie
    assert q["code_challenge"] not in cookie  # the verifier, not the challenge, is kept; sealed
    provider.challenge, provider.nonce = q["code_challenge"], q["nonce"]
    return q


async def test_authorization_code_with_pkce_signs_the_clinician_in(oidc_console):
    app, provider = oidc_console
    async with client(app) as c:
        page = await c.get("/sign-in")
        assert 'action="/sign-in/oidc"' in page.text and 'name="token"' not in page.text
        q = await start(c, provider)
        done = await c.get("/sign-in/callback", params={"code": "the-code", "state": q["state"]})
        assert done.status_code == 200, done.text
        assert 'http-equiv="refresh" content="0; url=/caseload"' in done.text
        session = [v for k, v in done.headers.multi_items() if k == "set-cookie" and v.startswith("rapport_console=")][0]
        assert "HttpOnly" in session and "samesite=strict" in session.lower()
        assert (await c.get("/caseload")).status_code == 200
        [req] = provider.token_requests
        assert req["grant_type"] == "authorization_code" and len(req["code_verifier"]) >= 43
        # pasted tokens are refused in this mode
        form = await c.get("/sign-in")
        pre = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert pre is None or (await c.post("/sign-in", data={"csrf_token": pre.group(1), "token": "x"})).status_code == 403


async def test_a_wrong_state_a_wrong_verifier_or_another_nonce_signs_nobody_in(oidc_console):
    app, provider = oidc_console
    async with client(app) as c:
        q = await start(c, provider)
        r = await c.get("/sign-in/callback", params={"code": "the-code", "state": q["state"] + "x"})
        assert r.status_code == 400 and "rapport_console=" not in r.headers.get("set-cookie", "")
    async with client(app) as c:
        q = await start(c, provider)
        provider.challenge = "not-the-challenge"  # the provider sees a verifier that does not match
        r = await c.get("/sign-in/callback", params={"code": "the-code", "state": q["state"]})
        assert r.status_code == 401 and "rapport_console=" not in r.headers.get("set-cookie", "")
    async with client(app) as c:
        q = await start(c, provider)
        provider.nonce_override = "another-sign-in"
        try:
            r = await c.get("/sign-in/callback", params={"code": "the-code", "state": q["state"]})
        finally:
            provider.nonce_override = None
        assert r.status_code == 401 and "nonce" in r.text
    async with client(app) as c:  # no sign-in in progress (no cookie)
        r = await c.get("/sign-in/callback", params={"code": "the-code", "state": "whatever"})
        assert r.status_code == 400
