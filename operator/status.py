"""From a reconcile report to the Tenant's `status` (pure; the handlers write it)."""

from __future__ import annotations

from typing import Any

from annostack.domain.conditions import Condition, ConditionType, set_condition
from annostack.domain.tenants import TenantNames, TenantStatus
from annostack.domain.workloads import DeploymentHealth
from annostack.services.tenants import ReconcileReport


def tenant_status(
    current: dict[str, Any] | None,
    names: TenantNames,
    report: ReconcileReport,
    generation: int,
) -> dict[str, Any]:
    previous = TenantStatus.model_validate(current or {})
    conditions = list(previous.conditions)
    for result in report.results:
        conditions = set_condition(
            conditions, result.condition, result.ok, result.reason, result.message, generation
        )
    failures = report.failures
    if failures:
        summary = "; ".join(f.message for f in failures)
        temporary = all(f.temporary for f in failures)
        conditions = set_condition(
            conditions, ConditionType.READY, False, failures[0].reason, summary, generation
        )
        conditions = set_condition(
            conditions,
            ConditionType.RECONCILING,
            temporary,
            "RetryingBackends",
            summary,
            generation,
        )
        conditions = set_condition(
            conditions, ConditionType.STALLED, not temporary, "BackendRejected", summary, generation
        )
        phase = "Reconciling" if temporary else "Stalled"
    else:
        conditions = set_condition(
            conditions, ConditionType.READY, True, "Provisioned", "", generation
        )
        conditions = set_condition(conditions, ConditionType.RECONCILING, False, "", "")
        conditions = set_condition(conditions, ConditionType.STALLED, False, "", "")
        phase = "Ready"
    return _dump(
        TenantStatus(
            observed_generation=generation,
            phase=phase,
            namespace=names.namespace,
            database=names.database,
            bucket=names.bucket,
            pulsar_namespace=names.pulsar_namespace,
            conditions=conditions,
        )
    )


BACKEND_CONDITIONS = (
    ConditionType.NAMESPACE_READY,
    ConditionType.DATABASE_READY,
    ConditionType.BUCKET_READY,
    ConditionType.MESSAGING_READY,
    ConditionType.WORKERS_READY,
)


def with_workers(current: dict[str, Any] | None, health: DeploymentHealth) -> dict[str, Any]:
    """The status after a look at the workers between reconciles: WorkersReady as seen, and
    Ready (with Reconciling) recomputed from every backend condition."""
    previous = TenantStatus.model_validate(current or {})
    if not previous.conditions:
        return _dump(previous)  # never reconciled yet: the first reconcile writes everything
    generation = previous.observed_generation
    conditions = set_condition(
        list(previous.conditions),
        ConditionType.WORKERS_READY,
        health.ready,
        health.reason,
        health.message,
        generation,
    )
    by_type = {c.type: c for c in conditions}
    failing = [
        by_type[t] for t in BACKEND_CONDITIONS if t in by_type and by_type[t].status != "True"
    ]
    if failing:
        summary = "; ".join(c.message for c in failing)
        conditions = set_condition(
            conditions, ConditionType.READY, False, failing[0].reason, summary, generation
        )
        if ConditionType.STALLED not in by_type:
            conditions = set_condition(
                conditions, ConditionType.RECONCILING, True, failing[0].reason, summary, generation
            )
        phase = previous.phase if previous.phase == "Stalled" else "Reconciling"
    else:
        conditions = set_condition(
            conditions, ConditionType.READY, True, "Provisioned", "", generation
        )
        conditions = set_condition(conditions, ConditionType.RECONCILING, False, "", "")
        phase = "Ready"
    return _dump(previous.model_copy(update={"conditions": conditions, "phase": phase}))


def with_condition(
    current: dict[str, Any] | None,
    type_: ConditionType,
    healthy: bool,
    reason: str,
    message: str,
    phase: str | None = None,
) -> dict[str, Any]:
    """The current status with one condition (and optionally the phase) changed."""
    previous = TenantStatus.model_validate(current or {})
    conditions: list[Condition] = set_condition(
        list(previous.conditions), type_, healthy, reason, message, previous.observed_generation
    )
    update: dict[str, Any] = {"conditions": conditions}
    if phase is not None:
        update["phase"] = phase
    return _dump(previous.model_copy(update=update))


def _dump(status: TenantStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
