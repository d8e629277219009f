"""The notifier's own Prometheus metrics (beside rapport_shared.metrics), served on ``/metrics``."""

from prometheus_client import Counter, Histogram

IN_DOUBT = Counter(
    "rapport_notifier_in_doubt_total",
    "In-doubt deliveries (the sender died mid-send, or a send broke off unanswered) by how they were settled:"
    " accepted (the provider had it: recorded delivered, not sent), not_accepted (sent), lookup_failed (nothing"
    " sent, asked again later), resent (sent again without knowing: no status lookup, or none answered in RETRY_FOR_S)",
    ["channel", "outcome"])
DELIVERIES = Counter(
    "rapport_notifier_deliveries_total",
    "Deliveries finished, by outcome: delivered, failed (for good: retries exhausted or a permanent error),"
    " suppressed (replay mode), no_channel (the recipient has no reachable channel: recorded failed at once),"
    " skipped (nowhere to send it: a referrer summary with no referrer channel)",
    ["channel", "kind", "outcome"])
DELIVERY_SECONDS = Histogram(
    "rapport_notifier_delivery_seconds",
    "Time from a delivery being queued (its row written, service clock) to the channel accepting it (recorded"
    " delivered), retries included: the last step of a safety page's path. Delivered deliveries only (failed ones"
    " are counted in rapport_notifier_deliveries_total)",
    ["channel", "kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 21600, 86400))
SAFETY_FALLBACK = Counter(
    "rapport_notifier_safety_fallback_total",
    "Safety pages that found nobody on call for the alert's organisation, by kind (safety_alert: out of hours;"
    " safety_escalation) and outcome: paged (RAPPORT_SAFETY_FALLBACK paged instead) or unconfigured (no fallback set:"
    " recorded as a failed no_channel delivery)",
    ["kind", "outcome"])
