"""kopf handlers for Tenant: reconcile on change, re-check on a timer, tear down on delete.

Handlers are synchronous (kopf runs them in its thread pool): the backend clients are. One
lock per tenant serialises the change handler and the drift timer, which kopf may otherwise
run at the same time for the same object.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import kopf

from annostack.domain.conditions import ConditionType
from annostack.domain.tenants import (
    API_GROUP,
    API_VERSION,
    DeletionPolicy,
    TenantNames,
    TenantSpec,
)
from annostack.operator import metrics
from annostack.operator.specs import parse_spec
from annostack.operator.status import tenant_status, with_condition
from annostack.operator.timings import OperatorTimings
from annostack.services.tenant_credentials import ROTATE_ANNOTATION
from annostack.services.tenants import ReconcileReport, TenantProvisioner

PLURAL = "tenants"
PAUSE_ANNOTATION = f"{API_GROUP}/paused"
ABANDON_ANNOTATION = f"{API_GROUP}/abandon-cleanup"

# Read at import: kopf fixes a timer's interval when the handler is registered.
TIMINGS = OperatorTimings()

# One lock per tenant, shared by every handler that changes its backends (see scaling.py).
tenant_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


def _provisioner(memo: kopf.Memo) -> TenantProvisioner:
    provisioner: TenantProvisioner = memo["provisioner"]
    return provisioner


def _paused(spec: TenantSpec, meta: kopf.Meta) -> bool:
    return spec.paused or meta.get("annotations", {}).get(PAUSE_ANNOTATION) == "true"


def write_status(memo: kopf.Memo, name: str, status: dict[str, Any], current: kopf.Status) -> None:
    # The drift pass visits every tenant every interval; most passes change nothing, and
    # skipping identical writes keeps the apiserver (and etcd) out of the idle cost. Only the
    # keys we write count: the scaler owns `backlog` and `replicas` in the same status.
    if all(current.get(key) == value for key, value in status.items()):
        return
    _provisioner(memo).b.kube.patch_status(API_GROUP + "/" + API_VERSION, "Tenant", name, status)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
def reconcile_tenant(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    _reconcile(name, spec, meta, status, body, memo, logger, trigger="change")


@kopf.on.update(
    API_GROUP, API_VERSION, PLURAL, field=("metadata", "annotations", ROTATE_ANNOTATION)
)
def rotate_credentials(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """A new rotate-credentials value starts a rotation now rather than at the next timer."""
    _reconcile(name, spec, meta, status, body, memo, logger, trigger="change")


@kopf.timer(
    API_GROUP,
    API_VERSION,
    PLURAL,
    interval=TIMINGS.drift_interval_seconds,
    initial_delay=TIMINGS.drift_interval_seconds,
)
def check_drift(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    if meta.get("deletionTimestamp"):
        return
    _reconcile(name, spec, meta, status, body, memo, logger, trigger="timer")


def _reconcile(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    trigger: str,
) -> None:
    tenant_spec = parse_spec(TenantSpec, spec, "Tenant")
    # Under the tenant's lock, the pause too: "Paused" is written only once no pass that began
    # before the pause is still changing backends.
    with tenant_locks[name]:
        if trigger == "timer" and _superseded(memo, name, meta):
            logger.debug("drift pass skipped: the Tenant changed while it waited")
            return
        if _paused(tenant_spec, meta):
            paused = with_condition(
                dict(status), ConditionType.RECONCILING, False, "", "", phase="Paused"
            )
            write_status(memo, name, paused, status)
            logger.debug("paused: no backend is changed")
            return
        started = time.monotonic()
        rotation = meta.get("annotations", {}).get(ROTATE_ANNOTATION, "")
        report = _provisioner(memo).reconcile(name, tenant_spec, rotation)
        metrics.STEP_SECONDS.labels("Tenant").observe(time.monotonic() - started)
    _report(name, body, meta, status, memo, logger, report, trigger)


def _superseded(memo: kopf.Memo, name: str, meta: kopf.Meta) -> bool:
    """A timer's body is the Tenant as it was when the timer fired; if a change handler ran
    while this pass waited for the lock, applying the older spec would undo that change (a
    lowered replica count, a re-created bucket of a tenant paused meanwhile)."""
    live = _provisioner(memo).b.kube.get(API_GROUP + "/" + API_VERSION, "Tenant", name)
    if live is None:
        return True
    return int(live.metadata.generation or 0) != int(meta.get("generation", 0))


def _report(
    name: str,
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    logger: kopf.Logger,
    report: ReconcileReport,
    trigger: str,
) -> None:
    generation = int(meta.get("generation", 0))
    new_status = tenant_status(dict(status), TenantNames(tenant=name), report, generation)
    write_status(memo, name, new_status, status)
    if report.repaired and trigger == "timer":
        for repaired in report.repaired:
            metrics.DRIFT_REPAIRS.labels(repaired.split("/", 1)[0]).inc()
        message = "repaired drift: " + ", ".join(report.repaired)
        kopf.warn(body, reason="DriftRepaired", message=message)
        logger.warning(message)
    for failure in report.failures:
        metrics.BACKEND_ERRORS.labels(failure.condition, str(failure.temporary).lower()).inc()
    result = "ok" if report.ready else "error"
    metrics.RECONCILES.labels("Tenant", trigger, result).inc()
    if report.failures and trigger == "change":
        summary = "; ".join(f.message for f in report.failures)
        if all(f.temporary for f in report.failures):
            raise kopf.TemporaryError(summary, delay=TIMINGS.retry_delay_seconds)
        raise kopf.PermanentError(summary)


@kopf.on.delete(API_GROUP, API_VERSION, PLURAL)
def delete_tenant(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    retry: int,
    **_: Any,
) -> None:
    policy = DeletionPolicy(spec.get("deletionPolicy", DeletionPolicy.RETAIN))
    with tenant_locks[name]:
        report = _provisioner(memo).teardown(name, policy)
    logger.info(f"deleted ({policy}): removed {report.removed}, retained {report.retained}")
    if not report.errors:
        tenant_locks.pop(name, None)
        return
    summary = "; ".join(str(error) for error in report.errors)
    if meta.get("annotations", {}).get(ABANDON_ANNOTATION) == "true":
        kopf.warn(body, reason="CleanupAbandoned", message=f"left behind: {summary}")
        return
    if retry + 1 < TIMINGS.delete_retries_before_stalled:
        raise kopf.TemporaryError(summary, delay=TIMINGS.retry_delay_seconds)
    advice = (
        f"cannot finish deleting after {retry + 1} attempts: {summary}. Restore the backend, "
        f"or annotate the Tenant {ABANDON_ANNOTATION}=true to finish without that cleanup "
        "(and remove what is left by hand)"
    )
    stalled = with_condition(
        dict(status), ConditionType.STALLED, True, "DeletionBlocked", advice, phase="Stalled"
    )
    write_status(memo, name, stalled, status)
    kopf.warn(body, reason="DeletionBlocked", message=advice)
    raise kopf.TemporaryError(advice, delay=TIMINGS.stalled_retry_delay_seconds)
