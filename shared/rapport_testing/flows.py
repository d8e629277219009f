"""Reusable steps of an episode through the running system (tests, demo, benchmarks)."""

from __future__ import annotations

import uuid

import httpx

# A PHQ-9 at caseness (total 18, moderately severe) with item 9 = 0.
PHQ9_BASELINE = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}


def phq9(total: int, item9: int = 0) -> dict[str, int]:
    """PHQ-9 answers (as a form sends them) with this total: items 1–8 filled in order, item 9 as given."""
    return {**_fill(total - item9, 8), "9": item9}


def gad7(total: int) -> dict[str, int]:
    """GAD-7 answers with this total, items filled in order."""
    return _fill(total, 7)


def _fill(total: int, items: int) -> dict[str, int]:
    out, rest = {}, total
    for n in range(1, items + 1):
        out[str(n)] = min(3, rest)
        rest -= out[str(n)]
    assert rest == 0, f"{total} does not fit in {items} items of 0-3"
    return out

AVAILABILITY = {"timezone": "Europe/London",
                "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"},
                          {"weekday": 4, "start": "14:00", "end": "17:00"}]}
INVENTORY = {"people": [
    {"role": "partner", "closeness": 1, "support": False, "conflict": True, "change_near_onset": True},
    {"role": "friend", "closeness": 2, "support": True, "conflict": False, "change_near_onset": False},
]}
FOCUS = {"primary": "role_transition", "secondary": "interpersonal_deficits",
         "rationale": "low mood began after a job loss; few people to turn to"}


def intake_parts(clinician_id: str = "clin-001", template_id: str = "ipt-standard", *, age_years: int = 34,
                 exclusions: list[str] | None = None, phq9: dict[int, int] | None = None) -> dict:
    """Every part an intake needs (the body of POST /v1/referrals/{id}/complete, each part also
    being the body of its own step endpoint), for a depression referral."""
    return {
        "consent": {"given": True, "method": "written"},
        # administered_at left to the service ("now" on its clock, which a simulation may set)
        "baseline": [{"instrument": "phq9", "answers": phq9 or PHQ9_BASELINE}],
        "inventory": INVENTORY,
        "focus": FOCUS,
        "template_id": template_id,
        "clinician_id": clinician_id,
        "availability": AVAILABILITY,
        "eligibility": {"age_years": age_years, "exclusions": exclusions or []},
    }


def intake_completion(clinician_id: str = "clin-001", template_id: str = "ipt-standard") -> dict:
    """A whole intake in one completion call (as a partner intake form sends it)."""
    return intake_parts(clinician_id, template_id)


def open_referral(intake_url: str, token: str, *, person_id: str | None = None, client: httpx.Client | None = None,
                  target_condition: str = "depression") -> str:
    c = client or httpx.Client(timeout=30)
    r = c.post(f"{intake_url}/v1/referrals", headers={"Authorization": f"Bearer {token}"}, json={
        "person_id": person_id or f"P-t{uuid.uuid4().hex[:12]}", "referral_source": "gp",
        "target_condition": target_condition})
    r.raise_for_status()
    return r.json()["episode_id"]


def run_intake(intake_url: str, token: str, *, person_id: str | None = None, clinician_id: str = "clin-001",
               client: httpx.Client | None = None) -> dict:
    """Open a referral and complete it in one call; returns the completion answer (episode id, event id)."""
    c = client or httpx.Client(timeout=30)
    episode_id = open_referral(intake_url, token, person_id=person_id, client=c)
    r = c.post(f"{intake_url}/v1/referrals/{episode_id}/complete", headers={"Authorization": f"Bearer {token}"},
               json=intake_completion(clinician_id))
    r.raise_for_status()
    return r.json()


def run_intake_steps(intake_url: str, token: str, *, person_id: str | None = None, contact: dict | None = None,
                     client: httpx.Client | None = None, **parts) -> dict:
    """Open a referral, record each part through its own endpoint, then complete (empty body)."""
    c = client or httpx.Client(timeout=30)
    auth = {"Authorization": f"Bearer {token}"}
    p = intake_parts(**parts)
    episode_id = open_referral(intake_url, token, person_id=person_id, client=c)
    base = f"{intake_url}/v1/referrals/{episode_id}"
    steps = [("PUT", "consent", p["consent"])]
    if contact is not None:
        steps.append(("PUT", "contact", contact))
    steps += [("POST", "baseline", b) for b in p["baseline"]]
    steps += [("PUT", "inventory", p["inventory"]), ("PUT", "focus", p["focus"]),
              ("PUT", "template", {"template_id": p["template_id"]}),
              ("PUT", "clinician", {"clinician_id": p["clinician_id"]}),
              ("PUT", "availability", p["availability"]), ("PUT", "eligibility", p["eligibility"])]
    for method, path, body in steps:
        c.request(method, f"{base}/{path}", headers=auth, json=body).raise_for_status()
    r = c.post(f"{base}/complete", headers=auth, json={})
    r.raise_for_status()
    return r.json()
