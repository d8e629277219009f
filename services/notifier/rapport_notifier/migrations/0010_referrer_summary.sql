-- The end-of-course summary for the referrer (issue 15 item 5; domain.md 4): sent only when the
-- person consented at intake (rapport.intake.completed.v1 share_outcomes_with_referrer), and the
-- partners' ordinary webhooks of rapport.outcome.evaluated.v1 respect the same consent. Episodes
-- recorded before this migration have none: not given (the event's own default for older records).
-- referral_source (coded, e.g. gp, self) tells a self-referral, whose only referrer is the person.
ALTER TABLE episodes ADD COLUMN share_outcomes_with_referrer boolean NOT NULL DEFAULT false;
ALTER TABLE episodes ADD COLUMN referral_source text;
