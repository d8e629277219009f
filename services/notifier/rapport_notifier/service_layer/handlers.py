"""Notifier's use cases."""

from __future__ import annotations

import uuid

from rapport_shared.contracts import CoursePlannedV1, NotificationDeliveredV1
from rapport_shared.uow import UnitOfWork


async def notify_course_planned(course: CoursePlannedV1, uow: UnitOfWork, cause_id: str, channel) -> None:
    """Tell the assigned clinician a course was planned — at most once per (event, recipient, channel)."""
    recipient = f"clinician:{course.clinician_id}"
    notification_id = uuid.uuid5(uuid.UUID(cause_id), f"{recipient}/{channel.name}")
    inserted = await uow.conn.fetchval(
        "INSERT INTO deliveries (notification_id, cause_event_id, episode_id, kind, recipient_ref, channel, status, delivered_at)"
        " VALUES ($1,$2,$3,'course_planned',$4,$5,'delivered',$6)"
        " ON CONFLICT (cause_event_id, recipient_ref, channel) DO NOTHING RETURNING true",
        notification_id, uuid.UUID(cause_id), course.episode_id, recipient, channel.name, uow.now(),
    )
    if not inserted:
        return
    await channel.send(
        notification_id=str(notification_id), recipient_ref=recipient, kind="course_planned",
        params={"episode_id": str(course.episode_id), "sessions": course.contracted_sessions,
                "first_session_at": course.first_session_at.isoformat()},
    )
    await uow.emit(
        NotificationDeliveredV1(
            episode_id=course.episode_id, notification_id=notification_id, kind="course_planned",
            recipient_ref=recipient, channel=channel.name, cause_event_id=uuid.UUID(cause_id), delivered_at=uow.now(),
        )
    )
