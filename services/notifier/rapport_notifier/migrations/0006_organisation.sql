-- Who may see what (docs/access.md, issue 10): every record here belongs to an organisation.
-- episodes: from IntakeCompletedV1.organisation_id, else the service's default_organisation (an
-- event of an older producer), else NULL (belongs to none: reached by no organisation's callers).
-- Rows written before this migration stay NULL; the default organisation applies to them at
-- read time (access resolvers, delivery log, webhook planning) when one is configured.
ALTER TABLE episodes ADD COLUMN organisation_id text;
CREATE INDEX episodes_person ON episodes (person_id);
CREATE INDEX episodes_clinician ON episodes (clinician_id);
CREATE INDEX alerts_episode ON alerts (episode_id);
CREATE INDEX notifications_alert ON notifications (alert_id) WHERE alert_id IS NOT NULL;
-- Recipients set over HTTP belong to the organisation of the admin who set them: an admin sees,
-- changes and erases only its own organisation's clinicians and on-call slots, and an alert
-- pages only its own organisation's on-call clinicians.
ALTER TABLE clinicians ADD COLUMN organisation_id text;
ALTER TABLE oncall ADD COLUMN organisation_id text;
CREATE INDEX oncall_organisation ON oncall (organisation_id, starts_at);
-- A partner's subscription receives only events of its own organisation's episodes (the
-- partner's token ``org`` when it subscribed).
ALTER TABLE subscriptions ADD COLUMN organisation_id text;
