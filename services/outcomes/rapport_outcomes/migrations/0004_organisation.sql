-- Who may see what (architecture.md): every episode belongs to one organisation, learned from
-- rapport.intake.completed.v1 (organisation_id; for older producers the service's
-- RAPPORT_DEFAULT_ORGANISATION, else NULL: such an episode is reachable by its own patient only).
-- Submissions, alerts and evaluations are scoped through their episode (all carry episode_id).
ALTER TABLE episodes ADD COLUMN organisation_id text;
CREATE INDEX episodes_by_organisation ON episodes (organisation_id, clinician_id);
