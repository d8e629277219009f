"""Reusable steps of an episode through the running system (tests, demo, benchmarks)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import httpx

# A PHQ-9 at caseness (total 18, moderately severe) with item 9 = 0.
PHQ9_BASELINE = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 0}


def intake_completion(clinician_id: str = "clin-001", template_id: str = "ipt-standard") -> dict:
    return {
        "template_id": template_id,
        "clinician_id": clinician_id,
        "focus": {"primary": "role_transition", "secondary": "interpersonal_deficits"},
        "availability": {"timezone": "Europe/London",
                         "slots": [{"weekday": 2, "start": "09:00", "end": "12:00"},
                                   {"weekday": 4, "start": "14:00", "end": "17:00"}]},
        "baseline": [{"instrument": "phq9", "answers": PHQ9_BASELINE,
                      "administered_at": datetime.now(timezone.utc).isoformat()}],
    }


def run_intake(intake_url: str, token: str, *, person_id: str | None = None, clinician_id: str = "clin-001",
               client: httpx.Client | None = None) -> dict:
    """Open a referral and complete it; returns the completion answer (episode id, event id)."""
    c = client or httpx.Client(timeout=30)
    auth = {"Authorization": f"Bearer {token}"}
    r = c.post(f"{intake_url}/v1/referrals", headers=auth, json={
        "person_id": person_id or f"P-{uuid.uuid4().hex[:12]}", "referral_source": "gp",
        "target_condition": "depression"})
    r.raise_for_status()
    episode_id = r.json()["episode_id"]
    r = c.post(f"{intake_url}/v1/referrals/{episode_id}/complete", headers=auth,
               json=intake_completion(clinician_id))
    r.raise_for_status()
    return r.json()
