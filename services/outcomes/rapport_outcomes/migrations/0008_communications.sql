-- Issue 15 item 4 (domain.md 5): a FHIR Communication per message the notifier sent or gave up on,
-- from rapport.notification.delivered.v1 / failed.v1. Coded facts and times only: the recipient's
-- role, never their id or an address; no message text.

CREATE TABLE communications (
    notification_id uuid        PRIMARY KEY,
    episode_id      uuid        NOT NULL,   -- no FK: notifications may arrive before the intake event
    kind            text        NOT NULL,   -- session_reminder, questionnaire_request, safety_alert, ...
    channel         text        NOT NULL,   -- email, sms, webhook, log
    recipient_role  text        NOT NULL CHECK (recipient_role IN ('patient', 'clinician', 'oncall', 'partner')),
    status          text        NOT NULL CHECK (status IN ('delivered', 'failed')),
    at              timestamptz NOT NULL,   -- delivered_at / failed_at
    cause_event_id  uuid,                   -- the event the notification answered
    error_code      text,                   -- failed: the notifier's code
    attempts        integer,                -- failed: the attempts made
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX communications_by_episode ON communications (episode_id, at);

-- The course events that introduced or moved each session (course.planned: every planned session;
-- session.scheduled / .rescheduled: the one): a session reminder names such an event as its cause.
CREATE TABLE session_events (
    event_id   uuid NOT NULL,
    session_id uuid NOT NULL,
    episode_id uuid NOT NULL,
    PRIMARY KEY (event_id, session_id)
);
CREATE INDEX session_events_by_episode ON session_events (episode_id);
