-- The notifier's own state: recipients, the projections its rules read, webhook subscriptions
-- and the deliveries (one row per idempotency key). Pending plans are rows in `timers`.
DROP TABLE deliveries;

CREATE TABLE patients (                       -- from rapport.private.contacts (+ local preferences)
    person_id         text PRIMARY KEY,
    email             text,
    phone             text,
    channel_consent   jsonb NOT NULL DEFAULT '{}',
    preferred_channel text,
    quiet_hours       jsonb,
    updated_at        timestamptz NOT NULL
);
CREATE TABLE patient_preferences (            -- set over HTTP (admin): language, quiet hours
    person_id   text PRIMARY KEY,
    language    text,
    quiet_hours jsonb,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE clinicians (
    clinician_id text PRIMARY KEY,
    email        text,
    phone        text,
    language     text NOT NULL,
    channels     text[] NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE TABLE oncall (
    slot_id      uuid PRIMARY KEY,
    clinician_id text        NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL
);
CREATE TABLE episodes (
    episode_id   uuid PRIMARY KEY,
    person_id    text,
    clinician_id text,
    course_id    uuid,
    instruments  text[],
    ended_at     timestamptz
);
CREATE TABLE sessions (
    session_id  uuid PRIMARY KEY,
    episode_id  uuid        NOT NULL,
    number      integer     NOT NULL,
    starts_at   timestamptz NOT NULL,
    status      text        NOT NULL,     -- scheduled | cancelled | attended | missed
    cause_event_id uuid     NOT NULL      -- the event that set the current time
);
CREATE TABLE questionnaire_requests (
    session_id   uuid PRIMARY KEY,
    episode_id   uuid        NOT NULL,
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    answered_at  timestamptz
);
CREATE TABLE alerts (
    alert_id        uuid PRIMARY KEY,
    episode_id      uuid        NOT NULL,
    kind            text        NOT NULL,
    clinician_id    text        NOT NULL,
    raised_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by text,
    escalated_at    timestamptz,
    resolved_at     timestamptz
);
CREATE TABLE subscriptions (
    subscription_id uuid PRIMARY KEY,
    partner_id      text        NOT NULL,
    url             text        NOT NULL,
    secret          text        NOT NULL,
    event_types     text[]      NOT NULL,
    created_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
-- One row per delivery; idem_key = cause event id / recipient / channel / kind. Never holds
-- contact details: the address is resolved when sending (so erasure reaches pending ones too).
CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    idem_key        text        NOT NULL UNIQUE,
    cause_event_id  uuid        NOT NULL,
    episode_id      uuid        NOT NULL,
    kind            text        NOT NULL,
    recipient_ref   text        NOT NULL,
    channel         text        NOT NULL,
    language        text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}',
    alert_id        uuid,
    status          text        NOT NULL, -- ready | sending | delivered | failed | cancelled | suppressed
    created_at      timestamptz NOT NULL, -- service clock
    attempts        integer     NOT NULL DEFAULT 0,
    in_doubt        integer     NOT NULL DEFAULT 0, -- resends after a crash mid-send (see docs/notifier.md)
    first_attempt_at timestamptz,         -- wall clock from here on
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    finished_at     timestamptz,
    last_error      text
);
CREATE INDEX notifications_ready ON notifications (next_attempt_at) WHERE status = 'ready';
CREATE INDEX notifications_sending ON notifications (lease_until) WHERE status = 'sending';
CREATE INDEX notifications_episode ON notifications (episode_id, created_at);
