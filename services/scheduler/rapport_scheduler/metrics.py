"""The scheduler's own Prometheus metrics (beside rapport_shared.metrics), served on ``/metrics``."""

from prometheus_client import Histogram

# How long patients wait for their first session: the calendar's capacity as the clinic feels it.
# Observed when a course is planned (inside the consumer's transaction: a redelivered intake
# event that rolled back is observed again).
FIRST_SESSION_WAIT_DAYS = Histogram(
    "rapport_scheduler_first_session_wait_days",
    "Days from intake completion to the first booked session of a newly planned course, by template",
    ["template_id"], buckets=(7, 14, 21, 28, 42, 56, 84, 126, 182, 365, 730))
