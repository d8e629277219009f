-- Issue 15 (domain.md 5, FHIR for partners): what outcomes keeps of the course so that an episode
-- exports as an EpisodeOfCare with its Condition, Goal (the focus problem area), CarePlan (course,
-- phases, sessions) and an Appointment / Encounter per session. Coded facts and times only: no
-- names, no contact data, no notes.

-- The provisional focus from intake; the course's (confirmed or changed in the initial phase) wins.
ALTER TABLE episodes
    ADD COLUMN focus_primary   text,
    ADD COLUMN focus_secondary text;

ALTER TABLE courses
    ADD COLUMN phase_plan         jsonb,           -- [{phase, first_session, last_session}], latest contract
    ADD COLUMN planned_at         timestamptz,
    ADD COLUMN focus_primary      text,
    ADD COLUMN focus_secondary    text,
    ADD COLUMN focus_confirmed_at timestamptz;     -- the checklist's focus_confirmed item

-- One row per session of the course, from rapport.course (planned, scheduled, rescheduled, cancelled,
-- missed, attended). No FK to episodes: course events may arrive before the intake event.
CREATE TABLE course_sessions (
    session_id       uuid PRIMARY KEY,
    episode_id       uuid        NOT NULL,
    course_id        uuid,
    number           integer     NOT NULL,
    starts_at        timestamptz,
    duration_minutes integer,
    kind             text,
    optional_parent  boolean     NOT NULL DEFAULT false,  -- IPT-A's optional parent session (no contract position)
    status           text        NOT NULL CHECK (status IN ('booked', 'attended', 'missed', 'cancelled')),
    phase            text,                        -- the phase it belonged to, once attended
    attended_at      timestamptz,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX course_sessions_by_episode ON course_sessions (episode_id, number);
