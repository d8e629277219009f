-- A clinician's working hours ({timezone, slots: [{day, start, end}]}, rules.WorkingHours); NULL:
-- none configured (a safety alert pages the clinician and escalates to on-call after the timeout).
ALTER TABLE clinicians ADD COLUMN working_hours jsonb;
-- Set when a safety alert arrived outside the assigned clinician's working hours and the on-call
-- clinician(s) were paged at once (audit).
ALTER TABLE alerts ADD COLUMN out_of_hours boolean NOT NULL DEFAULT false;
