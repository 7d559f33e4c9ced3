"""Prometheus metrics of the operator (served on `--metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "annostack_operator_reconciles_total",
    "Reconcile passes, by resource kind, trigger and result.",
    ["kind", "trigger", "result"],
)
BACKEND_ERRORS = Counter(
    "annostack_operator_backend_errors_total",
    "Failed reconcile steps, by backend condition and whether the error was temporary.",
    ["condition", "temporary"],
)
STEP_SECONDS = Histogram(
    "annostack_operator_reconcile_duration_seconds",
    "Duration of one reconcile pass over all backends of a resource.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DRIFT_REPAIRS = Counter(
    "annostack_operator_drift_repairs_total",
    "Objects found different from the spec and put back, by object kind.",
    ["object"],
)
JOB_MESSAGES = Counter(
    "annostack_operator_job_messages_total",
    "Processing messages published by ProcessingJob fan-out.",
)
JOBS_FINISHED = Counter(
    "annostack_operator_jobs_finished_total",
    "ProcessingJobs that reached a final phase, by phase (Complete, Failed, Cancelled).",
    ["phase"],
)
