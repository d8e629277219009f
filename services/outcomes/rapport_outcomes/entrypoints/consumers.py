"""Outcomes' event subscriptions: thin adapters from an event to a use case."""

from __future__ import annotations

from rapport_shared.consumer import EventConsumer
from rapport_shared.contracts import CoursePlannedV1, IntakeCompletedV1
from rapport_shared.contracts.course import CourseEndedV1, SessionAttendedV1

from ..domain.policy import OutcomesPolicy
from ..service_layer import handlers


def register(runtime, consumer: EventConsumer, *, policy: OutcomesPolicy | None = None) -> None:
    policy = policy or OutcomesPolicy()
    # An intake event from an older producer names no organisation: take the configured one.
    default_organisation = getattr(getattr(runtime, "settings", None), "default_organisation", "") or None

    @consumer.on(IntakeCompletedV1)
    async def on_intake_completed(uow, event, data: IntakeCompletedV1) -> None:
        await handlers.record_baseline(data, uow, cause_id=event.id, policy=policy,
                                       default_organisation=default_organisation)

    @consumer.on(CoursePlannedV1)
    async def on_course_planned(uow, event, data: CoursePlannedV1) -> None:
        await handlers.course_planned(data, uow)

    @consumer.on(SessionAttendedV1)
    async def on_session_attended(uow, event, data: SessionAttendedV1) -> None:
        await handlers.session_attended(data, uow, policy)

    @consumer.on(CourseEndedV1)
    async def on_course_ended(uow, event, data: CourseEndedV1) -> None:
        await handlers.course_ended(data, uow, policy)
