-- In-doubt deliveries (docs/notifier.md, "Exactly once"): a row whose lease expired while
-- `sending` is in doubt until it is settled. `in_doubt` now counts how often a row was found in
-- doubt; `doubt_since` is set while that doubt is unsettled; it is settled either by asking the
-- provider (`in_doubt_resolved`: the email status lookup answered, so no blind resend) or by
-- sending again without knowing (`in_doubt_resends`: the only sends that can arrive twice).
ALTER TABLE notifications ADD COLUMN doubt_since timestamptz;
ALTER TABLE notifications ADD COLUMN in_doubt_resolved integer NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN in_doubt_resends integer NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN status_lookups integer NOT NULL DEFAULT 0;  -- failed/answered lookups
-- Before this migration every in-doubt row was resent blindly.
UPDATE notifications SET in_doubt_resends = in_doubt WHERE in_doubt > 0;
