-- Messaging tables every service has in its own schema (applied before the service's own migrations).

-- Transactional outbox: written in the same transaction as the state change it announces.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,           -- publish order
    event_id    uuid        NOT NULL UNIQUE,     -- ce_id
    topic       text        NOT NULL,
    key         bytea       NOT NULL,            -- episode id
    headers     jsonb       NOT NULL,            -- CloudEvents binary-mode headers
    value       bytea       NOT NULL,            -- the event's data as JSON
    event_type  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

-- Inbox: ids of events whose effect has been committed; a duplicate delivery is skipped.
CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    event_type   text        NOT NULL,
    topic        text        NOT NULL,
    kafka_partition integer  NOT NULL,
    kafka_offset bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
