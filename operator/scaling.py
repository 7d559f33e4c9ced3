"""kopf timer: follow each tenant's queue with its worker count (or hand the rule to KEDA)."""

from __future__ import annotations

from typing import Any

import kopf
from prometheus_client import Counter, Gauge

from annostack.domain.errors import AnnostackError
from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames, TenantSpec
from annostack.operator.specs import parse_spec
from annostack.operator.status import with_workers
from annostack.operator.tenants import (
    PAUSE_ANNOTATION,
    PLURAL,
    TIMINGS,
    tenant_locks,
    write_status,
)
from annostack.services.autoscaling import QueueScaler, ScaleDecision
from annostack.services.tenants import TenantProvisioner

BACKLOG = Gauge("annostack_tenant_backlog_messages", "Queued processing messages.", ["tenant"])
SCALINGS = Counter("annostack_operator_scalings_total", "Worker replica changes.", ["direction"])
DEAD_LETTERS = Gauge(
    "annostack_tenant_dead_letter_messages",
    "Messages in the tenant's dead-letter topic not yet cleared (read once a minute).",
    ["tenant"],
)


# A failed pass (Pulsar away) is retried at the next interval, not after kopf's default minute.
@kopf.timer(
    API_GROUP,
    API_VERSION,
    PLURAL,
    interval=TIMINGS.scale_interval_seconds,
    idle=0,
    backoff=TIMINGS.scale_interval_seconds,
)
def autoscale_workers(
    name: str,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    tenant_spec = parse_spec(TenantSpec, spec, "Tenant")
    paused = tenant_spec.paused or meta.get("annotations", {}).get(PAUSE_ANNOTATION) == "true"
    if paused or meta.get("deletionTimestamp"):
        return
    scaler: QueueScaler = memo["scaler"]
    # Same lock as reconcile: its Deployment apply keeps the replica count it read.
    with tenant_locks[name]:
        decision = scaler.scale(name, tenant_spec)
        _follow_workers(name, decision, status, memo)
    try:
        dead_letters = scaler.dead_letters(name)
    except AnnostackError as error:  # not provisioned yet, or Pulsar away: read it next pass
        logger.debug(f"dead letters not read: {error}")
    else:
        if dead_letters is not None:
            DEAD_LETTERS.labels(name).set(dead_letters)
    if decision.mode == "keda":
        _record_handover(name, status, scaler)
        return
    if decision.backlog is None:
        return
    BACKLOG.labels(name).set(decision.backlog)
    if decision.changed:
        assert decision.current is not None and decision.desired is not None
        SCALINGS.labels("up" if decision.desired > decision.current else "down").inc()
        logger.info(f"backlog {decision.backlog}: workers {decision.current} -> {decision.desired}")
    scale = {"backlog": decision.backlog, "replicas": decision.desired, "autoscaler": "builtin"}
    scaler.b.kube.patch_status(f"{API_GROUP}/{API_VERSION}", "Tenant", name, scale)


def _record_handover(name: str, status: kopf.Status, scaler: QueueScaler) -> None:
    """Once, when KEDA takes over: our last backlog and replica figures would go stale."""
    if status.get("autoscaler") == "keda":
        return
    BACKLOG.remove(name)
    handed = {"backlog": None, "replicas": None, "autoscaler": "keda"}
    scaler.b.kube.patch_status(f"{API_GROUP}/{API_VERSION}", "Tenant", name, handed)


def _follow_workers(
    name: str, decision: ScaleDecision, status: kopf.Status, memo: kopf.Memo
) -> None:
    """WorkersReady between reconciles: pods come and go with the scale, every pass looks.

    Right after a scale change the Deployment read is already stale; the next pass looks.
    """
    if decision.changed or not status.get("conditions"):
        return
    provisioner: TenantProvisioner = memo["provisioner"]
    names = TenantNames(tenant=name)
    if decision.mode == "builtin":
        health = provisioner.workers_health_of(names, decision.deployment)
    else:
        health = provisioner.workers_health(names)
    write_status(memo, name, with_workers(dict(status), health), status)
