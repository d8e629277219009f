"""Console settings (env vars ``RAPPORT_*``; the shared ones in rapport_shared/settings.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from rapport_shared.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    service_name: str = "console"
    http_port: int = 8085

    # The owning services' HTTP APIs: actions (acknowledge, resolve) go there with the signed-in
    # clinician's own token; the console never writes another service's data.
    outcomes_url: str = "http://127.0.0.1:8083"
    notifier_url: str = "http://127.0.0.1:8084"
    owner_timeout_s: float = Field(default=10.0, gt=0)

    # Session cookie (docs/console.md "Sessions"): always HttpOnly and SameSite=Strict; Secure
    # unless switched off for a development console served over plain http://127.0.0.1.
    cookie_secure: bool = True
    cookie_name: str = "rapport_console"
    # Keys the CSRF tokens (an HMAC of the session): the same on every replica. Empty outside
    # production: a random key per process (a restart signs everybody's forms anew).
    session_secret: SecretStr = SecretStr("")

    # How clinicians sign in: "token" pastes a bearer token (development: `rapport-admin token`);
    # "oidc" is the organisation's identity provider, authorization code + PKCE (docs/console.md).
    sign_in: Literal["token", "oidc"] = "token"
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_redirect_uri: str = ""
    oidc_scopes: str = "openid"

    # Server-sent events: a comment line this often keeps proxies from closing an idle stream;
    # a stream ends after sse_stream_s and the browser reconnects (and refreshes once), so a
    # stopping server never waits long for an open page.
    sse_keepalive_s: float = Field(default=10.0, gt=0)
    sse_stream_s: float = Field(default=15.0, gt=0)

    def production_refusals(self) -> list[str]:
        out = super().production_refusals()
        if not self.cookie_secure:
            out.append("production refuses RAPPORT_COOKIE_SECURE=false: the session cookie would travel over plain HTTP")
        if not self.session_secret.get_secret_value():
            out.append("production needs RAPPORT_SESSION_SECRET (the CSRF key, the same on every replica)")
        if self.sign_in == "token":
            out.append("production refuses RAPPORT_SIGN_IN=token (pasted bearer tokens): use oidc (docs/console.md)")
        elif not (self.oidc_issuer.startswith("https://") and self.oidc_client_id and self.oidc_redirect_uri):
            out.append("RAPPORT_SIGN_IN=oidc needs RAPPORT_OIDC_ISSUER (https), RAPPORT_OIDC_CLIENT_ID and "
                       "RAPPORT_OIDC_REDIRECT_URI")
        return out


def load() -> ConsoleSettings:
    return ConsoleSettings()
