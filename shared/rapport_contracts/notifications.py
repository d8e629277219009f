"""Events on ``rapport.notifications``: what was sent, to whom by reference, over which channel."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from .topics import NOTIFICATIONS
from .base import Code, EpisodeEventData


class NotificationDeliveredV1(EpisodeEventData):
    event_type = "rapport.notification.delivered.v1"
    topic = NOTIFICATIONS

    episode_id: UUID
    notification_id: UUID
    kind: Code
    recipient_ref: str = Field(pattern=r"^(patient|clinician|oncall|partner):[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    channel: Code
    cause_event_id: UUID
    delivered_at: datetime


class NotificationFailedV1(EpisodeEventData):
    event_type = "rapport.notification.failed.v1"
    topic = NOTIFICATIONS

    episode_id: UUID
    notification_id: UUID
    kind: Code
    recipient_ref: str = Field(pattern=r"^(patient|clinician|oncall|partner):[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    channel: Code
    cause_event_id: UUID
    error_code: Code
    attempts: int = Field(ge=1)
    failed_at: datetime
