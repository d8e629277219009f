CREATE TABLE episodes (
    episode_id   uuid PRIMARY KEY,
    person_id    text        NOT NULL,
    clinician_id text        NOT NULL,
    template_id  text        NOT NULL,
    began_at     timestamptz NOT NULL
);

CREATE TABLE submissions (
    submission_id   uuid PRIMARY KEY,
    episode_id      uuid        NOT NULL REFERENCES episodes (episode_id),
    instrument      text        NOT NULL,
    timepoint       text        NOT NULL,
    session_number  integer,
    answers         jsonb       NOT NULL,  -- item number → answer
    total           numeric     NOT NULL,
    band            text,
    caseness        boolean,
    flags           text[]      NOT NULL DEFAULT '{}',
    administered_at timestamptz NOT NULL,
    scored_at       timestamptz NOT NULL
);
CREATE INDEX submissions_by_episode ON submissions (episode_id, instrument, administered_at);
