"""Production sign-in: the organisation's OpenID Connect provider, authorization code + PKCE.

The console is the OIDC client: it sends the browser to the provider's authorization endpoint with
a PKCE challenge, then exchanges the returned code (with the verifier) at the token endpoint. The
ID token proves who signed in to the console (signature by the provider's keys, issuer, audience =
the console's client id, nonce); the **access token**, issued for Rapport's audience with the
``roles`` and ``org`` claims, is what the services verify, so it becomes the session like a
pasted development token (docs/console.md "Production sign-in").
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from rapport_shared.errors import DomainError

ALGORITHMS = ("ES256", "RS256")


class SignInFailed(DomainError):
    """The provider refused, could not be reached, or answered with something that does not verify."""


def new_verifier() -> str:
    """A PKCE code verifier: 64 characters of [A-Za-z0-9_-] (RFC 7636 allows 43 to 128)."""
    return secrets.token_urlsafe(48)


def challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding: the S256 code challenge."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class OidcClient:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str, redirect_uri: str, scopes: str = "openid",
                 timeout_s: float = 10.0, cache_s: float = 300.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.scopes = " ".join(dict.fromkeys(["openid", *scopes.split()]))
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.transport = transport  # tests: a stand-in provider
        self._meta: tuple[float, dict[str, Any]] | None = None

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport)

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            async with self._client() as c:
                r = await c.get(url)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInFailed(f"the identity provider did not answer ({type(exc).__name__})") from None

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached); its issuer must be the configured one."""
        if self._meta and time.monotonic() - self._meta[0] < self.cache_s:
            return self._meta[1]
        meta = await self._get(f"{self.issuer}/.well-known/openid-configuration")
        if meta.get("issuer", "").rstrip("/") != self.issuer:
            raise SignInFailed("the identity provider's discovery document names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not str(meta.get(key, "")).startswith("https://") and not self.transport:
                raise SignInFailed(f"the identity provider's {key} is not an https URL")
        self._meta = (time.monotonic(), meta)
        return meta

    async def authorization_url(self, *, state: str, nonce: str, code_challenge: str) -> str:
        meta = await self.metadata()
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                           "scope": self.scopes, "state": state, "nonce": nonce, "code_challenge": code_challenge,
                           "code_challenge_method": "S256"})
        return f"{meta['authorization_endpoint']}?{query}"

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for ``code`` (client_secret_basic when there is a secret)."""
        meta = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": verifier, "client_id": self.client_id}
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        try:
            async with self._client() as c:
                r = await c.post(meta["token_endpoint"], data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise SignInFailed(f"the identity provider did not answer ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise SignInFailed(f"the identity provider refused the sign-in ({r.status_code})")
        tokens = r.json()
        if not tokens.get("access_token") or not tokens.get("id_token"):
            raise SignInFailed("the identity provider returned no access token or no ID token")
        return tokens

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        meta = await self.metadata()
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("alg") not in ALGORITHMS:
                raise jwt.InvalidTokenError(f"algorithm {header.get('alg')!r} is not accepted")
            keys = jwt.PyJWKSet.from_dict(await self._get(meta["jwks_uri"]))
            key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
            if key is None:
                raise jwt.InvalidTokenError("unknown key id")
            claims = jwt.decode(id_token, key.key, algorithms=[header["alg"]], audience=self.client_id,
                                issuer=meta["issuer"], options={"require": ["sub", "exp", "iat", "iss", "aud"]})
        except (jwt.InvalidTokenError, jwt.PyJWKError, KeyError) as exc:
            raise SignInFailed(f"the ID token does not verify ({type(exc).__name__})") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInFailed("the ID token's nonce is not this sign-in's")
        return claims
