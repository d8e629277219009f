-- Issue 15 item 5: IPT-A's optional mid-phase parent session is booked beside the contract. It
-- holds no contract position (its number is the position of the contracted session it follows),
-- so "one live session per position" is about the contracted sessions only. It still counts for
-- double booking (sessions_clinician_live covers every live session).
ALTER TABLE sessions ADD COLUMN optional_parent boolean NOT NULL DEFAULT false;
DROP INDEX sessions_one_live_per_position;
CREATE UNIQUE INDEX sessions_one_live_per_position ON sessions (course_id, number)
    WHERE status IN ('scheduled', 'attended') AND NOT optional_parent;
