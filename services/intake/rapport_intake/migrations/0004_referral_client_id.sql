-- A caller's idempotency key for opening a referral: a partner's form that retries a POST after
-- a timeout gets the referral it opened, not a second episode. Scoped to the caller (created_by)
-- so two partner systems' keys never meet.
ALTER TABLE referrals ADD COLUMN client_referral_id text;
CREATE UNIQUE INDEX referrals_client_referral_id ON referrals (created_by, client_referral_id)
    WHERE client_referral_id IS NOT NULL;
