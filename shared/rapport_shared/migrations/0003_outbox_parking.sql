-- Parked outbox rows (rapport_shared.outbox, docs/architecture.md "Parked outbox rows"): a row the
-- broker refuses for good (too large, or failing pass after pass) is parked instead of blocking the
-- relay. Later rows of the same key wait behind it; rows of other keys flow. An operator retries
-- or drops it with `rapport outbox retry|drop`.
ALTER TABLE outbox
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,  -- failed publishes counted against this row
    ADD COLUMN last_error text,                        -- the error class and message, never the data
    ADD COLUMN parked_at  timestamptz;                 -- set: the relay skips it (and its key's later rows)

CREATE INDEX outbox_parked ON outbox (key, seq) WHERE parked_at IS NOT NULL AND sent_at IS NULL;
