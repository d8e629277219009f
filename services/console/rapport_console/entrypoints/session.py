"""The browser session: the signed-in clinician's token in a cookie, and CSRF tokens.

- The cookie holds the bearer token the clinician signed in with (from ``rapport-admin token`` in
  development, from the identity provider in production): ``HttpOnly`` (no script reads it),
  ``SameSite=Strict`` (no other site's page sends it), ``Secure`` unless switched off for plain
  http in development, ``Path=/``, expiring with the token. Nothing is stored server-side: the
  token is verified on every request exactly as the other services verify it (JWKS), and the
  console passes it on to them for the clinician's actions.
- CSRF: every form carries ``HMAC(session_secret, "csrf:" + token)``; a POST without the
  matching value is refused (403) before anything is done. The sign-in form, before any session,
  carries the HMAC of a random pre-session cookie instead (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from typing import Any

import jwt
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PRE_COOKIE_SUFFIX = "_pre"
OIDC_COOKIE_SUFFIX = "_oidc"


class SessionKeys:
    def __init__(self, secret: str) -> None:
        # Empty outside production: a per-process key (production refuses an empty one).
        self.key = (secret or secrets.token_hex(32)).encode()

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:40]

    def csrf(self, token: str) -> str:
        return self._mac("csrf", token)

    def pre_csrf(self, pre: str) -> str:
        return self._mac("pre", pre)

    @staticmethod
    def matches(expected: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(expected, given or "")

    def seal(self, data: dict[str, str]) -> str:
        """``data`` as a cookie value the browser can hold but not alter (HMAC-signed)."""
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._mac('seal', body)}"

    def unseal(self, value: str | None) -> dict[str, str] | None:
        body, _, mac = (value or "").partition(".")
        if not body or not self.matches(self._mac("seal", body), mac):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None


def cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is no session
                return {}
    return {k: m.value for k, m in jar.items()}


def token_expiry(token: str) -> datetime:
    """The verified token's ``exp`` (read again without verifying: the caller verified it)."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return datetime.fromtimestamp(int(exp), tz=timezone.utc)


def set_session(response: Response, settings: Any, token: str, now: datetime) -> None:
    max_age = max(0, int((token_expiry(token) - now).total_seconds()))
    response.set_cookie(settings.cookie_name, token, max_age=max_age, path="/", secure=settings.cookie_secure,
                        httponly=True, samesite="strict")


def clear_session(response: Response, settings: Any) -> None:
    response.delete_cookie(settings.cookie_name, path="/", secure=settings.cookie_secure, httponly=True,
                           samesite="strict")


def set_oidc_state(response: Response, settings: Any, sealed: str) -> None:
    """State, nonce and PKCE verifier of a sign-in in progress, for the callback only. Lax: the
    provider's redirect back is a cross-site top-level navigation, which Strict would not carry."""
    response.set_cookie(settings.cookie_name + OIDC_COOKIE_SUFFIX, sealed, max_age=600, path="/sign-in/callback",
                        secure=settings.cookie_secure, httponly=True, samesite="lax")


def set_pre_session(response: Response, settings: Any, value: str) -> None:
    response.set_cookie(settings.cookie_name + PRE_COOKIE_SUFFIX, value, max_age=1800, path="/sign-in",
                        secure=settings.cookie_secure, httponly=True, samesite="strict")


class CookieSession:
    """ASGI middleware: a request carrying the session cookie (and no Authorization header) is
    authenticated from it — the principal goes where the shared access check looks first
    (``request.state.principal``), the raw token to ``request.state.session_token``. An invalid
    or expired cookie is no session: the page then asks the clinician to sign in."""

    def __init__(self, app: ASGIApp, *, cookie_name: str, verifier_of) -> None:
        self.app = app
        self.cookie_name = cookie_name
        self.verifier_of = verifier_of  # () -> TokenVerifier (the app's, set when it was built)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            has_bearer = any(name == b"authorization" for name, _ in scope.get("headers", []))
            token = cookies(scope).get(self.cookie_name)
            if token and not has_bearer:
                try:
                    principal = self.verifier_of().verify(token)
                except Exception:  # expired, unknown key, tampered: no session
                    principal = None
                if principal is not None:
                    state = scope.setdefault("state", {})
                    state["principal"] = principal
                    state["session_token"] = token
        await self.app(scope, receive, send)
