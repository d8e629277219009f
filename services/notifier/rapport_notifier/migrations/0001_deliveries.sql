-- One row per (cause event, recipient, channel): the idempotency key of a delivery.
CREATE TABLE deliveries (
    notification_id uuid PRIMARY KEY,
    cause_event_id  uuid        NOT NULL,
    episode_id      uuid        NOT NULL,
    kind            text        NOT NULL,
    recipient_ref   text        NOT NULL,
    channel         text        NOT NULL,
    status          text        NOT NULL,
    delivered_at    timestamptz,
    UNIQUE (cause_event_id, recipient_ref, channel)
);
