-- The full intake assessment (issue 3). Personal data lives only here: contact details in
-- `contacts`, free text in `referrals.focus.rationale`, `referrals.inventory` (labels, notes) and
-- `risk_reviews.note`; erasure clears all of them (see docs/intake.md).

ALTER TABLE referrals
    ADD COLUMN consent                  jsonb,
    ADD COLUMN inventory                jsonb,
    ADD COLUMN eligibility              jsonb,
    ADD COLUMN declined_at              timestamptz,
    ADD COLUMN decline_reasons          text[] NOT NULL DEFAULT '{}',
    ADD COLUMN declined_event_id        uuid,
    ADD COLUMN personal_text_erased_at  timestamptz,
    ADD COLUMN updated_at               timestamptz;
CREATE INDEX referrals_person ON referrals (person_id);

ALTER TABLE baseline_scores
    ADD COLUMN recorded_by text,
    ADD COLUMN recorded_at timestamptz;

CREATE TABLE risk_reviews (
    review_id    bigserial PRIMARY KEY,
    episode_id   uuid        NOT NULL REFERENCES referrals (episode_id),
    decision     text        NOT NULL CHECK (decision IN ('proceed', 'decline_crisis_referral')),
    reviewed_by  text        NOT NULL,
    reviewed_at  timestamptz NOT NULL,
    note         text,                    -- free text: erased on request
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX risk_reviews_episode ON risk_reviews (episode_id);

-- One row per person (contact details follow the person across episodes).
CREATE TABLE contacts (
    person_id          text PRIMARY KEY,
    name               text,
    email              text,
    phone              text,
    channel_consent    jsonb       NOT NULL DEFAULT '{}',
    preferred_channel  text,
    quiet_hours        jsonb,
    updated_by         text        NOT NULL,
    updated_at         timestamptz NOT NULL
);

-- "Publish this person's current contact state" markers, written in the transaction that
-- changed it; the contacts relay turns each into a record (or a tombstone) on the private topic.
CREATE TABLE contact_publications (
    seq        bigserial PRIMARY KEY,
    person_id  text        NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE erasures (
    erasure_id  bigserial PRIMARY KEY,
    person_id   text        NOT NULL,
    erased_by   text        NOT NULL,
    erased_at   timestamptz NOT NULL,
    referrals   integer     NOT NULL,
    contact     boolean     NOT NULL
);

-- Who read or changed which referral, when. Append-only: coded facts only (no personal text),
-- so erasure never needs to touch it.
CREATE TABLE audit_log (
    seq         bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    actor_roles text[]      NOT NULL DEFAULT '{}',
    action      text        NOT NULL,
    episode_id  uuid,
    person_id   text,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_episode ON audit_log (episode_id, seq);
CREATE INDEX audit_log_person ON audit_log (person_id, seq);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
