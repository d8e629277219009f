-- An end-of-course evaluation read before the course it is about (a replay reads rapport.outcomes
-- and rapport.intake in no particular order across topics): kept here and applied when the
-- course is planned, so the result does not depend on the order the topics are read in.
CREATE TABLE early_outcomes (
    episode_id  uuid PRIMARY KEY,
    evaluation  jsonb       NOT NULL,   -- rapport.outcome.evaluated.v1 data
    received_at timestamptz NOT NULL
);
