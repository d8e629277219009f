-- Intake's own state. Personal data (contact details) never leaves this schema except through
-- the private contacts path; shared topics get pseudonymous ids and coded facts only.
CREATE TABLE referrals (
    episode_id        uuid PRIMARY KEY,
    person_id         text        NOT NULL,
    referral_source   text        NOT NULL,
    target_condition  text        NOT NULL,
    status            text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed', 'declined')),
    created_by        text        NOT NULL,
    created_at        timestamptz NOT NULL,
    template_id       text,
    clinician_id      text,
    focus             jsonb,
    availability      jsonb,
    completed_at      timestamptz,
    completed_event_id uuid
);

CREATE TABLE baseline_scores (
    episode_id      uuid        NOT NULL REFERENCES referrals (episode_id),
    instrument      text        NOT NULL,
    answers         jsonb       NOT NULL,  -- item number → answer
    total           numeric     NOT NULL,
    band            text,
    caseness        boolean,
    flags           text[]      NOT NULL DEFAULT '{}',
    administered_at timestamptz NOT NULL,
    PRIMARY KEY (episode_id, instrument)
);
