-- The console's caseload read model (docs/console.md): what the shared topics say about each
-- episode, kept so the pages answer from one schema. Every table but `acknowledgements` is
-- projection (projection.py): rebuilt by replay, so no column holds processing time, and every
-- handler writes the same rows whatever order the topics are read in (docs/replay.md).

-- One row per episode. Columns come in groups, each written by one topic: intake (rapport.intake),
-- course (rapport.course); organisation_id by whichever names it first (they all agree).
CREATE TABLE episodes (
    episode_id          uuid PRIMARY KEY,
    organisation_id     text,
    -- rapport.intake
    status              text,                 -- completed | declined (NULL: intake not seen yet)
    clinician_id        text,                 -- the treating clinician named at intake
    intake_clinician_id text,
    template_id         text,
    target_condition    text,
    focus_primary       text,
    focus_secondary     text,
    referred_at         timestamptz,
    completed_at        timestamptz,
    declined_reason     text,
    -- rapport.course
    course_id           uuid,
    course_clinician_id text,
    course_template_id  text,
    contracted_sessions int,
    phase               text,
    phase_plan          jsonb,
    planned_at          timestamptz,
    ended_at            timestamptz,
    end_reason          text,
    attended_sessions   int NOT NULL DEFAULT 0
);
CREATE INDEX episodes_by_org ON episodes (organisation_id);

-- The calendar: one row per session (scheduled, attended, missed, cancelled; moved keeps where from).
CREATE TABLE sessions (
    session_id          uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    course_id           uuid NOT NULL,
    number              int NOT NULL,
    starts_at           timestamptz NOT NULL,
    duration_minutes    int NOT NULL,
    kind                text NOT NULL DEFAULT 'individual',
    status              text NOT NULL DEFAULT 'scheduled',  -- scheduled | attended | missed | cancelled
    moved_from          timestamptz,          -- the first time it was booked for, once moved
    moves               int NOT NULL DEFAULT 0,
    phase               text,                 -- the phase it belonged to (attended sessions)
    outcome_at          timestamptz,          -- attended / missed / cancelled at
    reason_code         text
);
CREATE INDEX sessions_by_episode ON sessions (episode_id, number);

-- Every phase transition, by the event that announced it (same id in a replay).
CREATE TABLE phase_changes (
    event_id            uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    course_id           uuid NOT NULL,
    from_phase          text NOT NULL,
    to_phase            text NOT NULL,
    effective_from_session int NOT NULL,
    reason              text NOT NULL,
    changed_at          timestamptz NOT NULL
);
CREATE INDEX phase_changes_by_episode ON phase_changes (episode_id, changed_at);

-- The initial-phase checklist (coded items; notes never leave the scheduler).
CREATE TABLE checklist (
    course_id           uuid NOT NULL,
    item                text NOT NULL,
    episode_id          uuid NOT NULL,
    session_number      int,
    diagnosis_code      text,
    focus_primary       text,
    focus_secondary     text,
    focus_changed       boolean NOT NULL DEFAULT false,
    recorded_at         timestamptz NOT NULL,
    PRIMARY KEY (course_id, item)
);

-- Scored submissions as rapport.score.submitted.v1 tells them (totals and bands; never answers).
CREATE TABLE scores (
    submission_id       uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    instrument          text NOT NULL,
    timepoint           text NOT NULL,
    session_number      int,
    total               double precision NOT NULL,
    band                text,
    caseness            boolean,
    baseline_total      double precision,
    change_from_baseline double precision,
    reliable_change     text,
    flags               text[] NOT NULL DEFAULT '{}',
    administered_at     timestamptz NOT NULL,
    scored_at           timestamptz NOT NULL
);
CREATE INDEX scores_by_episode ON scores (episode_id, instrument, administered_at);

-- Safety and review alerts, raised and resolved (rapport.outcomes).
CREATE TABLE alerts (
    alert_id            uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    kind                text NOT NULL,
    urgency             text NOT NULL,
    reason_code         text NOT NULL,
    clinician_id        text NOT NULL,
    instrument          text,
    session_number      int,
    raised_at           timestamptz NOT NULL,
    raised_event_id     uuid NOT NULL,        -- the cause of its pages and escalation (deliveries)
    linked_alert_ids    uuid[] NOT NULL DEFAULT '{}',
    resolved_by         text,
    resolved_at         timestamptz,
    action              text
);
CREATE INDEX alerts_by_episode ON alerts (episode_id, raised_at);

-- End-of-course evaluations, the highest revision per episode (rapport.outcome.evaluated.v1).
CREATE TABLE evaluations (
    episode_id          uuid PRIMARY KEY,
    revision            int NOT NULL,
    template_id         text,
    clinician_id        text,
    end_reason          text,
    finished_course     boolean NOT NULL,
    counts_toward_recovery boolean,
    recovery            boolean,
    reliable_improvement boolean,
    reliable_recovery   boolean,
    reliable_deterioration boolean,
    evaluated_at        timestamptz NOT NULL
);

-- What the notifier sent or failed to send, by reference (recipient role and id, channel, kind):
-- never an address. The cause links a page or an escalation to its alert's raised event.
CREATE TABLE deliveries (
    notification_id     uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    kind                text NOT NULL,
    recipient_ref       text NOT NULL,
    channel             text NOT NULL,
    status              text NOT NULL,        -- delivered | failed
    error_code          text,
    cause_event_id      uuid NOT NULL,
    at                  timestamptz NOT NULL
);
CREATE INDEX deliveries_by_episode ON deliveries (episode_id, at);
CREATE INDEX deliveries_by_cause ON deliveries (cause_event_id);

-- Record of authority (not projection): acknowledgements this console forwarded to the notifier
-- and the notifier accepted (who and when, as the notifier answered). The notifier has no event
-- for them, so only acknowledgements made here are shown.
CREATE TABLE acknowledgements (
    alert_id            uuid PRIMARY KEY,
    episode_id          uuid NOT NULL,
    acknowledged_by     text NOT NULL,
    acknowledged_at     timestamptz NOT NULL,
    escalated           boolean NOT NULL DEFAULT false
);
