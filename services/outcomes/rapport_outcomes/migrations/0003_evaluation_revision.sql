-- An end-of-course evaluation is revised when a score administered before the end is recorded
-- after it (the app's last questionnaire can land just after the clinician closes the course).
-- The row holds the latest revision; every revision went out as rapport.outcome.evaluated.v1.
ALTER TABLE evaluations ADD COLUMN revision integer NOT NULL DEFAULT 1;
-- The scores the first evaluation saw (recorded up to this seq). A revision counts those plus
-- the late ones given before the end, never a follow-up given after it. NULL (evaluated before
-- this column existed): every score is counted, as then.
ALTER TABLE evaluations ADD COLUMN through_seq bigint;
