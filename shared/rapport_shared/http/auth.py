"""HTTP authentication shared by all services: JWT bearer tokens (HS256) with roles.

A missing, malformed, expired or wrongly-signed token is a 401; a valid token without one of
the roles an endpoint needs is a 403. Health endpoints are the only unauthenticated ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Iterable

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel


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


class TokenAuthority:
    def __init__(self, secret: str, issuer: str = "rapport", audience: str = "rapport") -> None:
        self.secret = secret
        self.issuer = issuer
        self.audience = audience

    def issue(self, sub: str, roles: Iterable[str], ttl: timedelta = timedelta(hours=8), now: datetime | None = None) -> str:
        now = now or datetime.now(timezone.utc)
        claims = {"sub": sub, "roles": sorted(set(roles)), "iss": self.issuer, "aud": self.audience,
                  "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        claims = jwt.decode(
            token, self.secret, algorithms=["HS256"], audience=self.audience, issuer=self.issuer,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise jwt.InvalidTokenError("roles must be a list of strings")
        return Principal(sub=claims["sub"], roles=frozenset(roles))


_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    authority: TokenAuthority = request.app.state.token_authority
    try:
        return authority.verify(creds.credentials)
    except jwt.ExpiredSignatureError:
        raise _unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"invalid token: {exc}") from None


def require(*roles: Role | str):
    """Dependency: an authenticated principal holding at least one of ``roles``."""
    wanted = frozenset(str(r) for r in roles)

    async def dependency(principal: Principal = Depends(authenticate)) -> Principal:
        if wanted and not (principal.roles & wanted):
            raise HTTPException(status_code=403, detail=f"requires one of roles: {', '.join(sorted(wanted))}")
        return principal

    return dependency
