-- Issue 15 (domain.md 3.3): a new positive item 9 while an earlier safety alert is open is a new
-- alert, sent again and linked to the open one(s). So more than one safety alert of a cause may be
-- open; a repeated review cause still joins its open alert (one open review alert per cause).
DROP INDEX alerts_one_open_per_reason;
CREATE UNIQUE INDEX alerts_one_open_review_per_reason ON alerts (episode_id, kind, reason_code)
    WHERE status = 'open' AND kind = 'review';
-- The open alerts of the same cause a repeat was linked to when raised (oldest first).
ALTER TABLE alerts ADD COLUMN linked_alert_ids uuid[] NOT NULL DEFAULT '{}';

-- Issue 15 (domain.md 3.2): a finished course counts attended *treatment* sessions. The highest
-- position attended in an assessment phase (initial by default; positions are attended in order, so
-- they are the first ones). NULL: attendance seen here only in part (a course under way before this
-- migration); its evaluation then counts every attended session, as before, and says so.
ALTER TABLE courses ADD COLUMN assessment_sessions integer;
UPDATE courses SET assessment_sessions = 0 WHERE attended_sessions = 0;
ALTER TABLE courses ALTER COLUMN assessment_sessions SET DEFAULT 0;
ALTER TABLE evaluations ADD COLUMN treatment_sessions integer;
