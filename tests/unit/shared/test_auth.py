from datetime import datetime, timedelta, timezone

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from rapport_shared.http.auth import TokenAuthority, require

AUTH = TokenAuthority("unit-secret-0123456789abcdef0123456789")


@pytest.fixture
def client():
    app = FastAPI()
    app.state.token_authority = AUTH

    @app.get("/clinical")
    async def clinical(who=Depends(require("clinician"))):
        return {"sub": who.sub}

    return TestClient(app)


def test_valid_token_with_role(client):
    r = client.get("/clinical", headers={"Authorization": f"Bearer {AUTH.issue('c-1', ['clinician'])}"})
    assert r.status_code == 200 and r.json() == {"sub": "c-1"}


def test_missing_token_is_401(client):
    r = client.get("/clinical")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", [
    "garbage",
    TokenAuthority("another-secret-0123456789abcdef012345").issue("c-1", ["clinician"]),
    AUTH.issue("c-1", ["clinician"], ttl=timedelta(hours=1), now=datetime.now(timezone.utc) - timedelta(hours=2)),
    jwt.encode({"sub": "c-1", "roles": ["clinician"], "exp": 9999999999}, AUTH.secret, algorithm="HS256"),  # no iss/aud
])
def test_bad_tokens_are_401(client, token):
    assert client.get("/clinical", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_wrong_role_is_403(client):
    r = client.get("/clinical", headers={"Authorization": f"Bearer {AUTH.issue('p-1', ['partner'])}"})
    assert r.status_code == 403 and "clinician" in r.json()["detail"]
