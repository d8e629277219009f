"""The console's handlers with a fake unit of work (no Postgres, no HTTP): what each event writes
and announces, and how a clinician's action is carried to the owning service."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from rapport_console.domain.commands import AcknowledgeAlert, ResolveAlert
from rapport_console.service_layer.handlers import handlers
from rapport_shared.contracts.outcomes import AlertAction, AlertRaisedV1, ScoreSubmittedV1
from rapport_shared.envelope import new_event
from rapport_shared.errors import Conflict, NotFound
from rapport_testing.fake_uow import FakeUnitOfWork

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


class FakeCaseload:
    """Records every write; ``alerts`` answers ``alert(id)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.alerts: dict[uuid.UUID, dict] = {}

    def __getattr__(self, name):
        async def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
        return record

    async def alert(self, alert_id):
        return self.alerts.get(alert_id)

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == name]


class FakeOwners:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def acknowledge(self, alert_id, token):
        self.calls.append(("acknowledge", alert_id, token))
        return {"acknowledged_at": NOW.isoformat(), "acknowledged_by": "clin-1", "escalated": False}

    async def resolve(self, alert_id, token, *, action, action_text):
        self.calls.append(("resolve", alert_id, token, action, action_text))
        return {"status": "resolved"}


def uow(cause=None) -> FakeUnitOfWork:
    u = FakeUnitOfWork(settings=SimpleNamespace(default_organisation="org-default"), cause=cause)
    u.caseload = FakeCaseload()
    u.owners = FakeOwners()
    return u


def event_for(data):
    return new_event(type=data.event_type, source="/rapport/outcomes", subject=str(data.episode_id), data=data, time=NOW)


async def test_a_score_is_stored_and_announced_without_its_data_in_the_notice():
    data = ScoreSubmittedV1(episode_id=uuid.uuid4(), submission_id=uuid.uuid4(), instrument="phq9", timepoint="session",
                            total=12, band="moderate", caseness=True, baseline_total=18, change_from_baseline=-6,
                            reliable_change="improved", administered_at=NOW, scored_at=NOW)
    u = uow(event_for(data))
    await handlers.dispatch(data, u)
    [(ensured, _)] = u.caseload.called("ensure_episode")
    assert ensured == (data.episode_id, "org-default")  # no organisation on the event: the configured one
    [(_, stored)] = u.caseload.called("add_score")
    assert (stored["total"], stored["band"], stored["reliable_change"]) == (12, "moderate", "improved")
    assert u.caseload.called("announce") == [((data.episode_id, "score"), {})]
    assert not u.emitted  # the console publishes nothing


async def test_an_alert_keeps_the_event_that_raised_it_as_the_cause_of_its_pages():
    data = AlertRaisedV1(episode_id=uuid.uuid4(), alert_id=uuid.uuid4(), kind="safety", urgency="urgent",
                         reason_code="safety_item_positive", clinician_id="clin-1", raised_at=NOW, organisation_id="org-a")
    cause = event_for(data)
    u = uow(cause)
    await handlers.dispatch(data, u)
    [(_, raised)] = u.caseload.called("alert_raised")
    assert raised["raised_event_id"] == uuid.UUID(cause.id)
    assert u.caseload.called("ensure_episode")[0][0] == (data.episode_id, "org-a")


async def test_acknowledge_goes_to_the_notifier_with_the_clinicians_token_and_is_remembered():
    episode, alert = uuid.uuid4(), uuid.uuid4()
    u = uow()
    u.caseload.alerts[alert] = {"episode_id": episode, "kind": "safety", "resolved_at": None}
    answer = await handlers.dispatch(AcknowledgeAlert(episode_id=episode, alert_id=alert, actor="clin-1", token="tok"), u)
    assert answer["acknowledged_by"] == "clin-1"
    assert u.owners.calls == [("acknowledge", alert, "tok")]
    [(_, ack)] = u.caseload.called("acknowledged")
    assert (ack["alert_id"], ack["by"], ack["at"], ack["escalated"]) == (alert, "clin-1", NOW, False)


async def test_actions_on_an_alert_of_another_episode_a_review_alert_or_a_resolved_one_are_refused():
    episode, alert, review = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    u = uow()
    u.caseload.alerts[alert] = {"episode_id": episode, "kind": "safety", "resolved_at": NOW}
    u.caseload.alerts[review] = {"episode_id": episode, "kind": "review", "resolved_at": None}
    with pytest.raises(NotFound):  # the alert exists, but not in the episode the caller reached
        await handlers.dispatch(AcknowledgeAlert(episode_id=uuid.uuid4(), alert_id=alert, actor="c", token="t"), u)
    with pytest.raises(Conflict):
        await handlers.dispatch(AcknowledgeAlert(episode_id=episode, alert_id=review, actor="c", token="t"), u)
    with pytest.raises(Conflict):
        await handlers.dispatch(ResolveAlert(episode_id=episode, alert_id=alert, actor="c", action=AlertAction.other,
                                             action_text=None, token="t"), u)
    assert u.owners.calls == []
    await handlers.dispatch(ResolveAlert(episode_id=episode, alert_id=review, actor="c", action=AlertAction.assessment,
                                         action_text="seen", token="t"), u)
    assert u.owners.calls == [("resolve", review, "t", "assessment", "seen")]


def test_every_shared_event_the_read_model_needs_has_a_handler():
    types = {m.event_type for m in handlers.event_models}
    assert {"rapport.intake.completed.v1", "rapport.course.planned.v1", "rapport.course.phase_changed.v1",
            "rapport.session.attended.v1", "rapport.session.missed.v1", "rapport.session.rescheduled.v1",
            "rapport.session.cancelled.v1", "rapport.score.submitted.v1", "rapport.alert.raised.v1",
            "rapport.alert.resolved.v1", "rapport.outcome.evaluated.v1", "rapport.notification.delivered.v1",
            "rapport.notification.failed.v1"} <= types
