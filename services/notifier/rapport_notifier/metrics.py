"""The notifier's own Prometheus metrics (beside rapport_shared.metrics), served on ``/metrics``."""

from prometheus_client import Counter

IN_DOUBT = Counter(
    "rapport_notifier_in_doubt_total",
    "In-doubt deliveries (the sender died mid-send, or a send broke off unanswered) by how they were settled:"
    " accepted (the provider had it: recorded delivered, not sent), not_accepted (sent), lookup_failed (nothing"
    " sent, asked again later), resent (sent again without knowing: no status lookup, or none answered in RETRY_FOR_S)",
    ["channel", "outcome"])
DELIVERIES = Counter(
    "rapport_notifier_deliveries_total",
    "Deliveries finished, by outcome: delivered, failed (for good: retries exhausted or a permanent error),"
    " suppressed (replay mode), no_channel (the recipient has no reachable channel: recorded failed at once)",
    ["channel", "kind", "outcome"])
SAFETY_FALLBACK = Counter(
    "rapport_notifier_safety_fallback_total",
    "Safety pages that found nobody on call for the alert's organisation, by kind (safety_alert: out of hours;"
    " safety_escalation) and outcome: paged (RAPPORT_SAFETY_FALLBACK paged instead) or unconfigured (no fallback set:"
    " recorded as a failed no_channel delivery)",
    ["kind", "outcome"])
