-- Durable timers (rapport_shared.timers), in every service's own schema. A timer is pending
-- until it fires (its effect committed in the same transaction that sets fired_at), is
-- cancelled, or fails for good after its retries. At most one pending timer per (kind, key).
CREATE TABLE timers (
    timer_id     uuid PRIMARY KEY,
    kind         text        NOT NULL,              -- e.g. scheduler.initial_window
    key          text        NOT NULL,              -- what it is about, e.g. course:<uuid>
    due_at       timestamptz NOT NULL,              -- in the service clock's time (may be simulated)
    payload      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    fired_at     timestamptz,
    cancelled_at timestamptz,
    failed_at    timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE UNIQUE INDEX timers_one_pending ON timers (kind, key)
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL;
CREATE INDEX timers_pending_due ON timers (due_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL;
