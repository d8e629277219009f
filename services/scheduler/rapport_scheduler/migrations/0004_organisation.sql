-- Who may see what (architecture.md): every course belongs to the organisation its episode
-- belongs to, learned from rapport.intake.completed.v1 (organisation_id; for older producers the
-- service's RAPPORT_DEFAULT_ORGANISATION, else NULL). The access resolvers (access.py) read it with
-- the course's clinician (the "assigned" relation). A NULL organisation is reached by no one
-- through a relation; rows planned before this migration are taken to belong to
-- RAPPORT_DEFAULT_ORGANISATION when it is set (the same rule as an event without the field).
ALTER TABLE courses ADD COLUMN organisation_id text;
CREATE INDEX courses_by_organisation ON courses (organisation_id, clinician_id);
