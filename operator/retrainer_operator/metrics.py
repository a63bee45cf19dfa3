"""Prometheus metrics of the operator (served on RETRAINER_METRICS_PORT).

Module-level collectors in the default registry: one process, one operator.
"""

from __future__ import annotations

import prometheus_client

__all__ = [
    "RECONCILE_SECONDS",
    "RUNS_FAILED",
    "RUNS_STARTED",
    "RUNS_SUCCEEDED",
    "RUN_COPY_STALE",
    "VERIFICATION_FAILURES",
    "serve",
]

RUNS_STARTED = prometheus_client.Counter(
    "retrainer_runs_started_total", "Training Jobs created for RetrainJobs."
)
RUNS_SUCCEEDED = prometheus_client.Counter(
    "retrainer_runs_succeeded_total", "RetrainJobs that reached Succeeded (verified)."
)
RUNS_FAILED = prometheus_client.Counter(
    "retrainer_runs_failed_total", "RetrainJobs that reached Failed, by reason.", ["reason"]
)
VERIFICATION_FAILURES = prometheus_client.Counter(
    "retrainer_verification_failures_total", "Versions whose locations failed verification."
)
RECONCILE_SECONDS = prometheus_client.Histogram(
    "retrainer_reconcile_seconds",
    "Time to reconcile one RetrainJob once.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

RUN_COPY_STALE = prometheus_client.Counter(
    "retrainer_run_copy_stale_total",
    "Passes whose remembered RetrainJob was stale (write refused with 409, run again from a read).",
)


def serve(port: int) -> None:
    """Serve /metrics on `port` in a background thread (0 disables it)."""
    if port:
        prometheus_client.start_http_server(port)
