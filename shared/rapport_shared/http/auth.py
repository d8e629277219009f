"""HTTP authentication shared by all services: bearer JWTs that services verify but cannot mint.

Services hold only public keys (a JWKS document: a file or an ``https`` URL, keys by ``kid``,
several valid at once during a rotation) and check the signature (ES256/RS256 only; ``none`` and
HMAC are never accepted from a JWKS), the issuer, the audience, ``exp`` and a maximum lifetime.
``TokenIssuer`` holds a private key: ``rapport-admin token`` and the tests use it as the
development issuer; in production an OIDC provider is the issuer (docs/access.md).

A shared HMAC secret (``TokenAuthority``) is for development and the in-process tests only;
production refuses to start with one (settings.py).

A missing, malformed, expired or wrongly-signed token is a 401; a valid token without one of
the roles an endpoint needs is a 403. Health endpoints are the only unauthenticated ones.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
# Key ids of the development keys shipped in the repository (deploy/dev-keys): production refuses them.
DEV_KID_PREFIX = "rapport-dev"


class Role(StrEnum):
    admin = "admin"
    clinician = "clinician"
    intake_clinician = "intake_clinician"
    partner = "partner"
    patient_app = "patient_app"
    operator = "operator"  # ops: metrics, DLQ, replay
    metrics = "metrics"  # a scraper (Prometheus): /metrics and nothing else, so its long-lived token opens no data


class Principal(BaseModel):
    sub: str
    roles: frozenset[str]
    # The organisation the caller acts for (a pseudonymous code, claim ``org``): records of
    # another organisation are outside its relationships (http/access.py).
    org: str | None = None


def _claims_to_principal(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise jwt.InvalidTokenError("roles must be a list of strings")
    org = claims.get("org")
    if org is not None and not isinstance(org, str):
        raise jwt.InvalidTokenError("org must be a string")
    return Principal(sub=claims["sub"], roles=frozenset(roles), org=org)


def _claims(sub: str, roles: Iterable[str], org: str | None, issuer: str, audience: str, ttl: timedelta,
            now: datetime | None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    claims: dict[str, Any] = {"sub": sub, "roles": sorted(set(roles)), "iss": issuer, "aud": audience,
                              "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    if org is not None:
        claims["org"] = org
    return claims


# ---- verification -------------------------------------------------------------------------------

class JwksSource:
    """Public keys by ``kid`` from a JWKS file (re-read when it changes) or an https URL (cached for
    ``cache_s``; an unknown kid refetches at most every ``min_refetch_s``, so a rotated key is
    picked up without letting a flood of bogus kids hammer the identity provider)."""

    def __init__(self, location: str, *, cache_s: float = 300.0, min_refetch_s: float = 30.0) -> None:
        if not location.startswith("https://") and location.startswith(("http://", "ftp://")):
            raise ValueError("RAPPORT_AUTH_JWKS must be a file path or an https:// URL")
        self.location = location
        self.cache_s = cache_s
        self.min_refetch_s = min_refetch_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self.refresh(force=True)

    @property
    def is_url(self) -> bool:
        return self.location.startswith("https://")

    def _read(self) -> dict[str, Any]:
        if self.is_url:
            import urllib.request  # noqa: PLC0415

            with urllib.request.urlopen(self.location, timeout=10) as r:  # noqa: S310 (https only, checked above)
                return json.loads(r.read())
        return json.loads(Path(self.location).read_text())

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not self.is_url:
                st = os.stat(self.location)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if not force and stamp == self._stamp:
                    return
                self._stamp = stamp
            elif not force and now - self._loaded_at < self.min_refetch_s:
                return
            doc = self._read()
            keys: dict[str, jwt.PyJWK] = {}
            for raw in doc.get("keys", []):
                if raw.get("kty") not in ("EC", "RSA") or "d" in raw:
                    raise ValueError(f"JWKS {self.location}: key {raw.get('kid')!r} is not a public EC/RSA key")
                if not raw.get("kid"):
                    raise ValueError(f"JWKS {self.location}: every key needs a kid")
                keys[raw["kid"]] = jwt.PyJWK.from_dict(raw)
            if not keys:
                raise ValueError(f"JWKS {self.location} holds no key")
            self._keys = keys
            self._loaded_at = now

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    def key(self, kid: str) -> jwt.PyJWK:
        if not self.is_url:
            self.refresh()  # a stat: a key removed from the file (rotation's last step) stops at once
        elif time.monotonic() - self._loaded_at > self.cache_s:
            self.refresh(force=True)
        if kid not in self._keys:
            self.refresh()  # a rotation: the new key may have been published since
        if kid not in self._keys:
            raise jwt.InvalidTokenError(f"unknown key id {kid!r}")
        return self._keys[kid]


class TokenVerifier:
    """What a service holds: public keys (JWKS), and in development optionally an HMAC secret."""

    def __init__(self, *, jwks: JwksSource | None = None, hmac_secret: str | None = None, issuer: str = "rapport",
                 audience: str = "rapport", max_lifetime: timedelta = timedelta(hours=12), leeway_s: int = 30) -> None:
        if jwks is None and not hmac_secret:
            raise ValueError("a token verifier needs a JWKS or (development only) an HMAC secret")
        self.jwks = jwks
        self.hmac_secret = hmac_secret
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg in ASYMMETRIC_ALGORITHMS and self.jwks is not None:
            kid = header.get("kid")
            if not kid:
                raise jwt.InvalidTokenError("token has no kid")
            key = self.jwks.key(kid)
            if key.algorithm_name != alg:  # an RSA key must not verify an "ES256" token, and back
                raise jwt.InvalidTokenError("algorithm does not match the key")
            secret: Any = key.key
            algorithms = [alg]
        elif alg == "HS256" and self.hmac_secret:
            secret, algorithms = self.hmac_secret, ["HS256"]
        else:
            raise jwt.InvalidTokenError(f"algorithm {alg!r} is not accepted")
        claims = jwt.decode(token, secret, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                            leeway=self.leeway_s, options={"require": ["sub", "exp", "iat", "iss", "aud"]})
        if claims["exp"] - claims["iat"] > self.max_lifetime.total_seconds():
            raise jwt.InvalidTokenError(f"token lifetime exceeds {int(self.max_lifetime.total_seconds())} s")
        return _claims_to_principal(claims)


# ---- issuing (development issuer and tests; production uses an identity provider) ---------------

class TokenIssuer:
    """An ES256 signing key with its key id: signs tokens, publishes its public JWKS entry."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, kid: str, issuer: str = "rapport",
                 audience: str = "rapport", org: str | None = None) -> None:
        self.private_key = private_key
        self.kid = kid
        self.issuer = issuer
        self.audience = audience
        self.default_org = org  # tests: the organisation of a token that names none

    @classmethod
    def generate(cls, kid: str, **kw: Any) -> "TokenIssuer":
        return cls(ec.generate_private_key(ec.SECP256R1()), kid, **kw)

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any], **kw: Any) -> "TokenIssuer":
        if "d" not in jwk:
            raise ValueError("a signing key needs its private part (d)")
        key = jwt.PyJWK.from_dict(jwk).key
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the signing key must be an EC P-256 key (ES256)")
        return cls(key, jwk["kid"], **kw)

    @classmethod
    def from_file(cls, path: str | Path, **kw: Any) -> "TokenIssuer":
        return cls.from_jwk(json.loads(Path(path).read_text()), **kw)

    def private_jwk(self) -> dict[str, Any]:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key))
        return {**d, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def public_jwk(self) -> dict[str, Any]:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {**d, "kid": self.kid, "alg": "ES256", "use": "sig"}

    def jwks(self, *others: "TokenIssuer") -> dict[str, Any]:
        return {"keys": [self.public_jwk(), *(o.public_jwk() for o in others)]}

    def issue(self, sub: str, roles: Iterable[str], ttl: timedelta = timedelta(hours=8), now: datetime | None = None,
              *, org: str | None = None, audience: str | None = None, issuer: str | None = None) -> str:
        claims = _claims(sub, roles, org if org is not None else self.default_org, issuer or self.issuer,
                         audience or self.audience, ttl, now)
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})


class TokenAuthority:
    """Development and in-process tests only: one HMAC secret that both signs and verifies.
    Production refuses it (anyone holding a service's configuration could mint an admin token)."""

    def __init__(self, secret: str, issuer: str = "rapport", audience: str = "rapport", org: str | None = None) -> None:
        self.secret = secret
        self.issuer = issuer
        self.audience = audience
        self.default_org = org

    def issue(self, sub: str, roles: Iterable[str], ttl: timedelta = timedelta(hours=8), now: datetime | None = None,
              *, org: str | None = None, audience: str | None = None, issuer: str | None = None) -> str:
        claims = _claims(sub, roles, org if org is not None else self.default_org, issuer or self.issuer,
                         audience or self.audience, ttl, now)
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        return TokenVerifier(hmac_secret=self.secret, issuer=self.issuer, audience=self.audience,
                             max_lifetime=timedelta(days=3650)).verify(token)


# ---- FastAPI dependencies ------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if creds is None or creds.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    verifier = getattr(request.app.state, "token_verifier", None) or request.app.state.token_authority
    try:
        principal = verifier.verify(creds.credentials)
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token expired") from None
    except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
        raise _unauthorized(f"invalid token: {exc}") from None
    request.state.principal = principal
    return principal


def require(*roles: Role | str):
    """Dependency: an authenticated principal holding at least one of ``roles``."""
    wanted = frozenset(str(r) for r in roles)

    async def dependency(principal: Principal = Depends(authenticate)) -> Principal:
        if wanted and not (principal.roles & wanted):
            raise HTTPException(status_code=403, detail=f"requires one of roles: {', '.join(sorted(wanted))}")
        return principal

    return dependency
