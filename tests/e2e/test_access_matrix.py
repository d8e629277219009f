"""The authorization matrix, generated: every route of every service's OpenAPI × every role,
against a record the caller has a relationship to and a record of another organisation, expecting
what the service's access policy (access.yaml + the shared rows) says — run against the four
services as processes. A route missing from a policy fails here (and the service would not start).

Expected answers:
- role not in the row: 403; no token: 401;
- role in the row, record route, relation the role may use held on the caller's record: neither
  401/403 nor the policy's 404 (the handler may still refuse the body: 409/422 are fine);
- the same route on the other organisation's record: the policy's 404, the same body as for an id
  that does not exist;
- role in the row, no record: neither 401 nor 403.
Plus the token cases: ``alg: none``, expired, signed by an unknown key, another audience.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from rapport_shared.http.access import AccessPolicy, Relation
from rapport_shared.http.auth import TokenIssuer
from rapport_testing.fixtures import OTHER_ORG, TEST_ORG
from rapport_testing.flows import phq9, run_intake
from rapport_testing.wait import until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("admin", "clinician", "intake_clinician", "partner", "patient_app", "operator", "metrics")
RECORD_RELATIONS = {Relation.own_person, Relation.assigned, Relation.care_team, Relation.organisation}


def policy_of(service: str) -> AccessPolicy:
    return AccessPolicy.load(ROOT / "services" / service / f"rapport_{service}" / "access.yaml")


@dataclass
class Episode:
    org: str
    episode_id: str
    person_id: str
    clinician_id: str
    intake_clinician_id: str
    course_id: str = ""
    session_id: str = ""
    submission_id: str = ""
    alert_id: str = ""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_episode(system, tokens, org: str) -> Episode:
    tag = uuid.uuid4().hex[:8]
    ep = Episode(org=org, episode_id="", person_id=f"P-mx{tag}", clinician_id=f"clin-mx{tag}",
                 intake_clinician_id=f"ic-mx{tag}")
    ic = tokens.issue(ep.intake_clinician_id, ["intake_clinician"], org=org)
    done = run_intake(system["intake"].url, ic, person_id=ep.person_id, clinician_id=ep.clinician_id)
    ep.episode_id = done["episode_id"]
    clin = _auth(tokens.issue(ep.clinician_id, ["clinician"], org=org))

    def course():
        r = httpx.get(f"{system['scheduler'].url}/v1/courses/by-episode/{ep.episode_id}", headers=clin)
        return r.json() if r.status_code == 200 else None

    c = await until(course, timeout=60, what="the course planned")
    ep.course_id, ep.session_id = c["course_id"], c["sessions"][-1]["session_id"]

    def submitted():
        r = httpx.post(f"{system['outcomes'].url}/v1/episodes/{ep.episode_id}/submissions", headers=clin,
                       json={"client_submission_id": f"mx-{tag}", "instrument": "phq9",
                             "answers": phq9(15, item9=1), "session_number": 1,
                             "administered_at": datetime.now(timezone.utc).isoformat()})
        return r.json() if r.status_code in (200, 201) else None

    s = await until(submitted, timeout=60, what="a score accepted")
    ep.submission_id, ep.alert_id = s["submission_id"], s["alert_ids"][0]

    def notifier_knows_alert():  # acknowledging one's own alert is an allowed effect anyway
        r = httpx.post(f"{system['notifier'].url}/v1/alerts/{ep.alert_id}/acknowledge", headers=clin)
        return r.status_code == 200

    await until(notifier_knows_alert, timeout=60, what="the notifier learning of the alert")
    return ep


@pytest.fixture(scope="module")
async def records(system, tokens):
    return await make_episode(system, tokens, TEST_ORG), await make_episode(system, tokens, OTHER_ORG)


def caller_token(tokens, role: str, ep: Episode) -> str:
    """A token of ``role`` holding the relationship that role has to ``ep`` (its own record)."""
    sub = {"clinician": ep.clinician_id, "intake_clinician": ep.intake_clinician_id, "patient_app": ep.person_id,
           "partner": f"partner-{ep.org}", "admin": f"admin-{ep.org}"}.get(role, f"{role}-1")
    org = None if role in ("patient_app", "operator", "metrics") else ep.org
    return tokens.issue(sub, [role], org=org) if org else _no_org(tokens).issue(sub, [role])


def _no_org(tokens) -> TokenIssuer:
    return TokenIssuer(tokens.private_key, tokens.kid, issuer=tokens.issuer, audience=tokens.audience)


def fill(path: str, ep: Episode) -> str:
    values = {"episode_id": ep.episode_id, "course_id": ep.course_id, "session_id": ep.session_id,
              "submission_id": ep.submission_id, "alert_id": ep.alert_id, "person_id": ep.person_id,
              "clinician_id": ep.clinician_id, "item": "diagnosis", "code": "phq9", "day": "2031-01-06",
              "subscription_id": str(uuid.uuid4())}

    def sub(m):
        name = m.group(1)
        assert name in values, f"the matrix does not know path parameter {name!r} ({path})"
        return values[name]

    return re.sub(r"\{([a-z_]+)\}", sub, path)


# Routes whose effect would spoil the shared e2e system for later tests (or this one's records):
# they are checked for the refusal side only (other organisation, wrong roles), never executed.
DESTRUCTIVE = {"POST /v1/persons/{person_id}/erasure", "DELETE /v1/patients/{person_id}",
               "DELETE /v1/clinicians/{clinician_id}", "PUT /v1/oncall", "PUT /v1/care-team",
               "POST /v1/admin/contacts/republish", "PUT /v1/closures/{day}", "DELETE /v1/closures/{day}",
               "PUT /v1/clinicians/{clinician_id}/working-hours"}


def core_404(r: httpx.Response, param: str | None) -> bool:
    if r.status_code != 404:
        return False
    body = r.json()
    return body.get("field") == param and str(body.get("detail", "")).startswith(f"no {(param or '').removesuffix('_id')} ")


def routes(system, service: str):
    doc = httpx.get(f"{system[service].url}/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method in ops:
            if method.upper() in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                yield method.upper(), path


@pytest.mark.parametrize("service", ["intake", "scheduler", "outcomes", "notifier"])
async def test_every_route_every_role_follows_the_policy(system, tokens, records, service):
    mine, other = records
    policy = policy_of(service)
    problems: list[str] = []
    checked = 0
    with httpx.Client(timeout=30) as c:
        for method, path in sorted(routes(system, service)):
            key = f"{method} {path}"
            rule = policy.rule(method, path)
            if rule is None:
                problems.append(f"{key}: no row in the access policy")
                continue
            url = system[service].url
            if rule.public:
                assert c.request(method, url + path).status_code == 200, key
                continue
            body = {} if method in ("POST", "PUT", "PATCH") else None
            assert c.request(method, url + fill(path, mine), json=body).status_code == 401, f"{key}: no token"
            for role in ROLES:
                checked += 1
                token = caller_token(tokens, role, mine)
                rels = rule.allow.get(role)
                if rels is None:
                    r = c.request(method, url + fill(path, mine), json=body, headers=_auth(token))
                    if r.status_code != 403:
                        problems.append(f"{key} as {role}: {r.status_code}, policy says 403")
                    continue
                is_record = rule.record is not None and bool(rels & RECORD_RELATIONS)
                if is_record:
                    r = c.request(method, url + fill(path, other), json=body, headers=_auth(token))
                    if not core_404(r, rule.record):
                        problems.append(f"{key} as {role} on another organisation's record: {r.status_code} {r.text[:120]}")
                    missing = path.replace("{" + rule.record + "}", str(uuid.uuid4()) if rule.record != "person_id"
                                           else "P-nobody")
                    m = c.request(method, url + fill(missing, mine), json=body, headers=_auth(token))
                    if core_404(r, rule.record) and {k: v for k, v in m.json().items() if k != "detail"} != \
                            {k: v for k, v in r.json().items() if k != "detail"}:
                        problems.append(f"{key} as {role}: not-yours and missing answer differently")
                if key in DESTRUCTIVE:
                    continue
                r = c.request(method, url + fill(path, mine), json=body, headers=_auth(token))
                if r.status_code in (401, 403) or (rule.record and core_404(r, rule.record)):
                    problems.append(f"{key} as {role} on its own record: {r.status_code} {r.text[:120]}")
    assert checked > 0
    assert not problems, "\n".join(problems)


def _b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("service", ["intake", "scheduler", "outcomes", "notifier"])
def test_forged_and_stale_tokens_are_401(system, tokens, service):
    now = int(time.time())
    claims = {"sub": "admin-x", "roles": ["admin"], "org": TEST_ORG, "iss": tokens.issuer, "aud": tokens.audience,
              "iat": now, "exp": now + 600}
    stranger = TokenIssuer.generate(tokens.kid)  # same kid, another key
    unknown = TokenIssuer.generate("unknown-kid")
    cases = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "expired": tokens.issue("admin-x", ["admin"], ttl=timedelta(minutes=5),
                                now=datetime.now(timezone.utc) - timedelta(hours=1)),
        "signed by another key under a known kid": stranger.issue("admin-x", ["admin"], org=TEST_ORG),
        "unknown key id": unknown.issue("admin-x", ["admin"], org=TEST_ORG),
        "another audience": tokens.issue("admin-x", ["admin"], audience="someone-else"),
        "another issuer": tokens.issue("admin-x", ["admin"], issuer="https://evil.example"),
        "lifetime over the maximum": tokens.issue("admin-x", ["admin"], ttl=timedelta(days=30)),
    }
    url = f"{system[service].url}/v1/access-audit"
    assert httpx.get(url, headers=_auth(tokens.issue("admin-x", ["admin"]))).status_code == 200
    for name, token in cases.items():
        r = httpx.get(url, headers=_auth(token))
        assert r.status_code == 401, f"{service}: {name}: {r.status_code} {r.text}"
