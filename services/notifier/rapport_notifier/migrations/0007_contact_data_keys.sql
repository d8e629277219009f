-- Crypto-shredding (docs/privacy.md): contact records (contact.v2) are encrypted with per-person
-- data keys that arrive on rapport.private.person-keys, wrapped by the master key. Kept here
-- wrapped, as received; a key tombstone (erasure) deletes the person's key, contact and anything
-- parked. `contact_pending`: a contact record read before its key record (the two topics are not
-- ordered with each other); only ciphertext, applied when the key arrives.
CREATE TABLE contact_keys (
    person_id    text PRIMARY KEY,
    dek_id       text        NOT NULL,
    master_kid   text        NOT NULL,
    wrapped_key  bytea       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contact_pending (
    person_id    text PRIMARY KEY,
    dek_id       text        NOT NULL,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
