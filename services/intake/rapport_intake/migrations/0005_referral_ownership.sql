-- Who may see what (architecture.md, issue 10): every referral belongs to the organisation that
-- opened it (the opener's token claim `org`, a pseudonymous code) and names its intake clinician
-- (the opener, when they hold the intake_clinician role; NULL when an admin or a partner system
-- opened it). Rows written before this migration have neither: the service takes them to belong
-- to RAPPORT_DEFAULT_ORGANISATION (empty: to none, so only a route open to the role alone reaches them).
ALTER TABLE referrals
    ADD COLUMN organisation_id     text,
    ADD COLUMN intake_clinician_id text;
CREATE INDEX referrals_organisation ON referrals (organisation_id, created_at, episode_id);

-- The organisation the actor of an audit entry acted for: an admin's GET /v1/audit shows only
-- its organisation's trail (entries on its referrals, or by its own callers). Additive: existing
-- entries keep what they said (append-only).
ALTER TABLE audit_log ADD COLUMN actor_org text;
