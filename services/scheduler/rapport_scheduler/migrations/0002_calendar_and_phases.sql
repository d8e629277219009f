-- Issue 4: the full course state (phase history, checklist, counters), the session calendar
-- with outcomes, and the booking constraints (clinicians' working hours, clinic closure days).

ALTER TABLE courses
    ADD COLUMN focus                  jsonb,
    ADD COLUMN availability           jsonb,                         -- the patient's weekly windows (booking)
    ADD COLUMN phase_history          jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN checklist              jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN attended               integer     NOT NULL DEFAULT 0,
    ADD COLUMN consecutive_missed     integer     NOT NULL DEFAULT 0,
    ADD COLUMN notices                jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN maintenance_contracted integer     NOT NULL DEFAULT 0,
    ADD COLUMN remission              boolean,
    ADD COLUMN ended_reason           text,
    ADD COLUMN ended_at               timestamptz,
    ADD COLUMN updated_at             timestamptz;

ALTER TABLE sessions
    ADD COLUMN kind         text NOT NULL DEFAULT 'individual',
    ADD COLUMN clinician_id text,
    ADD COLUMN ends_at      timestamptz,
    ADD COLUMN recorded_at  timestamptz,
    ADD COLUMN cancelled_by text,
    ADD COLUMN reason_code  text,
    ADD CONSTRAINT sessions_status_known CHECK (status IN ('scheduled', 'attended', 'missed', 'cancelled'));
UPDATE sessions s SET clinician_id = c.clinician_id, ends_at = s.starts_at + make_interval(mins => s.duration_minutes)
    FROM courses c WHERE c.course_id = s.course_id;
ALTER TABLE sessions ALTER COLUMN clinician_id SET NOT NULL, ALTER COLUMN ends_at SET NOT NULL;

-- A missed or cancelled session keeps its number; its replacement takes the position. One live
-- (scheduled or attended) session per position.
ALTER TABLE sessions DROP CONSTRAINT sessions_course_id_number_key;
CREATE UNIQUE INDEX sessions_one_live_per_position ON sessions (course_id, number) WHERE status IN ('scheduled', 'attended');
-- Double-booking checks look up a clinician's live sessions by time.
CREATE INDEX sessions_clinician_live ON sessions (clinician_id, starts_at) WHERE status IN ('scheduled', 'attended');

CREATE TABLE clinician_hours (
    clinician_id text PRIMARY KEY,
    timezone     text        NOT NULL,
    slots        jsonb       NOT NULL,   -- [{weekday, start "HH:MM", end "HH:MM"}]
    updated_by   text        NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE closure_days (
    day         date PRIMARY KEY,        -- in the clinic's time zone
    reason_code text,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL
);
