-- Parked timers (rapport_shared.timers, docs/architecture.md "Durable timers"): a timer whose
-- handler keeps failing with an error that is not an outage is parked after its bounded retries
-- instead of being given up. A parked timer keeps its place as the one live timer of its
-- (kind, key) (timers_one_pending still covers it), is skipped by the runner, counted in
-- rapport_timers_parked and alerted on (RapportTimerParked). An operator retries or cancels it
-- with `rapport timers retry|cancel`; a service re-arming it at another time or with another
-- payload unparks it, cancelling it (the state no longer wants it) cancels it.
-- Outages (Postgres/Kafka unreachable) never count: those timers stay pending and are retried
-- until the infrastructure is back. failed_at is no longer set.
ALTER TABLE timers ADD COLUMN parked_at timestamptz;

-- Timers given up by earlier versions (failed_at) become parked, so they show in
-- `rapport timers parked` and can be retried; one per (kind, key), and only where no live timer of
-- the same (kind, key) was armed since (that one already stands for it). The others stay failed:
-- superseded history.
UPDATE timers t SET parked_at = t.failed_at, failed_at = NULL
 WHERE t.timer_id IN (
    SELECT DISTINCT ON (f.kind, f.key) f.timer_id FROM timers f
     WHERE f.failed_at IS NOT NULL AND f.fired_at IS NULL AND f.cancelled_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM timers p WHERE p.kind = f.kind AND p.key = f.key
                         AND p.fired_at IS NULL AND p.cancelled_at IS NULL AND p.failed_at IS NULL)
     ORDER BY f.kind, f.key, f.failed_at DESC);

CREATE INDEX timers_parked ON timers (kind)
    WHERE parked_at IS NOT NULL AND fired_at IS NULL AND cancelled_at IS NULL AND failed_at IS NULL;
