-- Outcomes proper: idempotent submissions with their change vs baseline, alerts with links and an
-- append-only audit, outcomes' own projection of the course, and end-of-course evaluations.

ALTER TABLE episodes
    ADD COLUMN target_condition text,
    ADD COLUMN correlation_id   text,            -- the episode's causal chain (from intake.completed)
    ADD COLUMN opened_at        timestamptz;

ALTER TABLE submissions
    ADD COLUMN client_submission_id   text,      -- the caller's idempotency key (HTTP); NULL for intake baselines
    ADD COLUMN fingerprint            text,      -- hash of the scored content: same key + other content = 409
    ADD COLUMN source                 text NOT NULL DEFAULT 'intake',  -- intake | http
    ADD COLUMN submitted_by           text,      -- principal (sub) or the intake event id
    ADD COLUMN submitted_role         text,
    ADD COLUMN display_total          text,
    ADD COLUMN subscales              jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN baseline_submission_id uuid,
    ADD COLUMN baseline_total         numeric,
    ADD COLUMN change_from_baseline   numeric,
    ADD COLUMN reliable_change        text,
    ADD COLUMN recorded_seq           bigserial; -- tie-break when two share an administered_at
CREATE UNIQUE INDEX submissions_client_key ON submissions (episode_id, client_submission_id)
    WHERE client_submission_id IS NOT NULL;

CREATE TABLE alerts (
    alert_id        uuid PRIMARY KEY,
    episode_id      uuid        NOT NULL REFERENCES episodes (episode_id),
    kind            text        NOT NULL CHECK (kind IN ('safety', 'review')),
    urgency         text        NOT NULL CHECK (urgency IN ('urgent', 'routine')),
    reason_code     text        NOT NULL,
    clinician_id    text        NOT NULL,
    submission_id   uuid REFERENCES submissions (submission_id),
    instrument      text,
    session_number  integer,
    raised_at       timestamptz NOT NULL,
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolved_by     text,
    resolved_role   text,
    resolved_at     timestamptz,                 -- when the clinician acted (may precede recording)
    recorded_at     timestamptz,                 -- when the resolution was recorded here
    action          text CHECK (action IN ('safety_plan', 'assessment', 'referral', 'other')),
    action_text     text,                        -- free text stays here, never on a topic
    CHECK ((status = 'open') = (resolved_at IS NULL))
);
-- One open alert per cause: a repeat is linked to it instead of paging again.
CREATE UNIQUE INDEX alerts_one_open_per_reason ON alerts (episode_id, kind, reason_code) WHERE status = 'open';
CREATE INDEX alerts_open_by_clinician ON alerts (clinician_id, raised_at) WHERE status = 'open';
CREATE INDEX alerts_by_episode ON alerts (episode_id, raised_at);

CREATE TABLE alert_links (
    alert_id      uuid        NOT NULL REFERENCES alerts (alert_id),
    submission_id uuid        NOT NULL REFERENCES submissions (submission_id),
    linked_at     timestamptz NOT NULL,
    PRIMARY KEY (alert_id, submission_id)
);

CREATE TABLE alert_audit (
    seq        bigserial PRIMARY KEY,
    alert_id   uuid        NOT NULL REFERENCES alerts (alert_id),
    action     text        NOT NULL CHECK (action IN ('raised', 'linked', 'resolved')),
    actor      text        NOT NULL,             -- 'system' or the clinician's id
    actor_role text,
    at         timestamptz NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}',
    event_id   uuid                              -- the event that announced it, if any
);
CREATE INDEX alert_audit_by_alert ON alert_audit (alert_id, seq);

-- Audit and alerts are never rewritten or deleted (the service role owns the tables, so a
-- REVOKE would not bind it; a trigger does).
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER alert_audit_append_only BEFORE UPDATE OR DELETE ON alert_audit
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER alerts_never_deleted BEFORE DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Outcomes' view of the course, fed by rapport.course. No FK to episodes: course events may
-- arrive before the intake event that opened the episode here.
CREATE TABLE courses (
    episode_id              uuid PRIMARY KEY,
    course_id               uuid,
    template_id             text,
    clinician_id            text,
    contracted_sessions     integer,
    attended_sessions       integer     NOT NULL DEFAULT 0,
    last_attended_number    integer,
    review_checked_at       timestamptz,          -- the mid-course review ran (once per course)
    review_alert_id         uuid,
    ended_at                timestamptz,
    end_reason              text,
    final_phase             text,
    ended_attended_sessions integer,
    updated_at              timestamptz NOT NULL
);

CREATE TABLE evaluations (
    episode_id             uuid PRIMARY KEY REFERENCES episodes (episode_id),
    course_id              uuid,
    template_id            text        NOT NULL,
    clinician_id           text        NOT NULL,
    end_reason             text,
    attended_sessions      integer     NOT NULL,
    finished_course        boolean     NOT NULL,
    counts_toward_recovery boolean     NOT NULL,
    caseness_at_baseline   boolean,
    caseness_at_end        boolean,
    recovery               boolean,
    reliable_improvement   boolean,
    reliable_deterioration boolean,
    reliable_recovery      boolean,
    response               boolean,
    remission              boolean,
    detail                 jsonb       NOT NULL,   -- per-instrument pairs and paired measures
    ended_at               timestamptz NOT NULL,
    evaluated_at           timestamptz NOT NULL,
    event_id               uuid        NOT NULL
);
CREATE INDEX evaluations_by_template ON evaluations (template_id, ended_at);
CREATE INDEX evaluations_by_clinician ON evaluations (clinician_id, ended_at);
