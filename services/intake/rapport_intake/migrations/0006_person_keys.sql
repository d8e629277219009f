-- Crypto-shredding (issue 17; docs/privacy.md): one data key per person encrypts that person's
-- contact records on rapport.private.contacts. Stored only wrapped by a master key (the
-- RAPPORT_CONTACTS_KEYS keyring, `master_kid` names which), published wrapped on the compacted
-- rapport.private.person-keys topic. Erasure destroys it: `wrapped_key` set to NULL and
-- `destroyed_at` set (the row stays as the record of the destruction; no key material is left).
-- A person has at most one live key; a contact recorded again after an erasure gets a new one.
CREATE TABLE person_keys (
    dek_id        text PRIMARY KEY,              -- data key id (random, names the key, not the person)
    person_id     text        NOT NULL,
    master_kid    text,                          -- NULL once destroyed
    wrapped_key   bytea,                         -- nonce || AES-256-GCM(master[master_kid], data key)
    created_at    timestamptz NOT NULL,
    rewrapped_at  timestamptz,                   -- last master-key rotation re-wrap
    destroyed_at  timestamptz,
    CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL)),
    CHECK ((wrapped_key IS NULL) = (master_kid IS NULL))
);
CREATE UNIQUE INDEX person_keys_one_live ON person_keys (person_id) WHERE destroyed_at IS NULL;

-- Erasure notices for the other services (rapport.erasures: person id, organisation, time; no
-- personal data): the contacts relay publishes each erasure once and stamps `published_at`.
-- Erasures recorded before this migration are published too (organisation NULL = every
-- organisation), so outcomes erases free text it still holds for them.
ALTER TABLE erasures ADD COLUMN organisation_id text;
ALTER TABLE erasures ADD COLUMN published_at timestamptz;
CREATE INDEX erasures_unpublished ON erasures (erasure_id) WHERE published_at IS NULL;
