-- Replay safety: the event time of the last change to a session, so a re-processed older event
-- (a replay that bypasses the inbox) never moves a session back (service_layer/handlers.py,
-- upsert_session). NULL for rows written before this migration (no guard for them).
ALTER TABLE sessions ADD COLUMN changed_at timestamptz;
-- The patient's language from the private contacts record (ContactRecordV1.language); an
-- HTTP preference (patient_preferences.language) overrides it.
ALTER TABLE patients ADD COLUMN language text;
-- A subscription receives events from its creation on, in service-clock time (simulated in tests,
-- like event times); NULL for subscriptions made before this migration (no such guard).
ALTER TABLE subscriptions ADD COLUMN effective_from timestamptz;
