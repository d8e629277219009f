"""Issue 10, item 1: every event about an episode names the organisation it belongs to.

Intake's events carry ``organisation_id`` since the first step of the issue; every event on
``rapport.course``, ``rapport.outcomes`` and ``rapport.notifications`` carries it through
``EpisodeEventData``: optional in v1 (older records lack it), so the published baseline stays
compatible."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from rapport_shared.contracts import EVENT_MODELS
from rapport_shared.contracts.base import EpisodeEventData
from rapport_tools.contracts.compat import PUBLISHED_DIR, load_dir
from rapport_shared.contracts.notifications import NotificationDeliveredV1
from rapport_shared.topics import COURSE, INTAKE, NOTIFICATIONS, OUTCOMES

DOWNSTREAM = sorted(t for t, m in EVENT_MODELS.items() if m.topic in (COURSE, OUTCOMES, NOTIFICATIONS))


def test_every_episode_event_downstream_of_intake_is_an_episode_event():
    assert len(DOWNSTREAM) == 17
    assert [t for t in DOWNSTREAM if not issubclass(EVENT_MODELS[t], EpisodeEventData)] == []
    assert all("organisation_id" in m.model_fields for m in EVENT_MODELS.values() if m.topic == INTAKE)


@pytest.mark.parametrize("event_type", DOWNSTREAM)
def test_organisation_id_is_optional_and_published(event_type):
    model = EVENT_MODELS[event_type]
    field = model.model_fields["organisation_id"]
    assert not field.is_required() and field.default is None
    assert list(model.model_fields)[:2] == ["episode_id", "organisation_id"]  # the key stays first
    published = load_dir(PUBLISHED_DIR)[event_type]
    assert "organisation_id" in published["properties"]
    assert "organisation_id" not in published.get("required", [])


def _delivered(**extra) -> NotificationDeliveredV1:
    return NotificationDeliveredV1(
        episode_id=uuid.uuid4(), notification_id=uuid.uuid4(), kind="course_planned", recipient_ref="clinician:c-1",
        channel="log", cause_event_id=uuid.uuid4(), delivered_at=datetime(2026, 1, 5, tzinfo=timezone.utc), **extra)


def test_an_older_record_without_the_field_is_still_read():
    payload = json.loads(_delivered().model_dump_json())
    del payload["organisation_id"]
    assert NotificationDeliveredV1.model_validate(payload).organisation_id is None


def test_with_organisation_names_it_once_and_validates_it():
    e = _delivered()
    owned = e.with_organisation("org-test")
    assert owned.organisation_id == "org-test" and owned.model_dump(exclude={"organisation_id"}) == e.model_dump(
        exclude={"organisation_id"})
    assert e.with_organisation(None) is e  # an episode of no organisation
    assert owned.with_organisation("org-other") is owned  # the producer's value is never replaced
    with pytest.raises(ValidationError):
        e.with_organisation("jane@example.org")  # a pseudonymous code only, like every id on a topic
