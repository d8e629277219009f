CREATE TABLE courses (
    course_id           uuid PRIMARY KEY,
    episode_id          uuid        NOT NULL UNIQUE,   -- one course per episode
    person_id           text        NOT NULL,
    template_id         text        NOT NULL,
    clinician_id        text        NOT NULL,
    contracted_sessions integer     NOT NULL,
    phase               text        NOT NULL,
    planned_at          timestamptz NOT NULL
);

CREATE TABLE sessions (
    session_id       uuid PRIMARY KEY,
    course_id        uuid        NOT NULL REFERENCES courses (course_id),
    number           integer     NOT NULL,
    starts_at        timestamptz NOT NULL,
    duration_minutes integer     NOT NULL,
    status           text        NOT NULL DEFAULT 'scheduled',
    UNIQUE (course_id, number)
);
