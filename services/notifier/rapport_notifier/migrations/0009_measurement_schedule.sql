-- Measurement per programme (issue 15 item 1; domain.md §3.4): what a questionnaire request asks
-- for follows the schedule of the episode's target condition (from rapport.intake.completed.v1) at
-- that session number of the contracted course (rapport.course.planned.v1, then each acute
-- rapport.course.contract_changed.v1). `contracted_at` is the event time of the contract the count
-- comes from, so a re-processed older contract cannot put an earlier count back.
-- `instruments` (the intake's baseline instruments) stays: a baseline-only instrument already
-- given at intake is not asked again before session 1.
ALTER TABLE episodes ADD COLUMN target_condition text;
ALTER TABLE episodes ADD COLUMN contracted_sessions integer;
ALTER TABLE episodes ADD COLUMN contracted_at timestamptz;
-- What the request asked for, so its reminder asks for the same (NULL: a request from before).
ALTER TABLE questionnaire_requests ADD COLUMN instruments text[];
