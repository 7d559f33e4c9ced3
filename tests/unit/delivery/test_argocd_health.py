"""The Argo CD health check (manifests/gitops/argocd/health.lua) on the operator's real statuses.

Argo CD runs the script with gopher-lua (Lua 5.1) and a global `obj`; lupa's Lua 5.1 runs it
the same way here. Tenant statuses are produced by the operator's own `tenant_status` and
`with_condition` from reconcile reports, so a change in how the operator writes status is
seen by this test rather than by a stuck Argo CD sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest

from annostack.domain.conditions import ConditionType, set_condition
from annostack.domain.processing import DatasetStatus, JobPhase, ProcessingJobStatus
from annostack.domain.tenants import TenantNames
from annostack.operator.status import tenant_status, with_condition
from annostack.operator.tenants import PAUSE_ANNOTATION
from annostack.services.tenants import ReconcileReport, StepResult

ROOT = Path(__file__).parents[3]
HEALTH_LUA = ROOT / "manifests" / "gitops" / "argocd" / "health.lua"
NAMES = TenantNames(tenant="acme")
BACKENDS = (
    ConditionType.NAMESPACE_READY,
    ConditionType.DATABASE_READY,
    ConditionType.BUCKET_READY,
    ConditionType.MESSAGING_READY,
    ConditionType.WORKERS_READY,
)


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def tenant(status: dict[str, Any] | None, generation: int = 1, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "acme", "generation": generation}
    metadata.update(extra.pop("metadata", {}))
    obj: dict[str, Any] = {
        "apiVersion": "annostack.io/v1alpha1",
        "kind": "Tenant",
        "metadata": metadata,
        "spec": {"displayName": "Acme", **extra.pop("spec", {})},
    }
    if status is not None:
        obj["status"] = status
    return obj


def report(*failures: StepResult) -> ReconcileReport:
    failed = {f.condition for f in failures}
    ok = [StepResult(c, True, "Ready", "") for c in BACKENDS if c not in failed]
    return ReconcileReport(results=[*ok, *failures])


READY = tenant_status(None, NAMES, report(), generation=1)
RECONCILING = tenant_status(
    READY,
    NAMES,
    report(
        StepResult(ConditionType.MESSAGING_READY, False, "BackendUnavailable", "pulsar: 503", True)
    ),
    generation=1,
)
STALLED = tenant_status(
    READY,
    NAMES,
    report(
        StepResult(ConditionType.DATABASE_READY, False, "BackendRejected", "access denied", False)
    ),
    generation=1,
)


def test_a_provisioned_tenant_is_healthy() -> None:
    assert READY["phase"] == "Ready"  # the sample is what the operator writes when all is well
    assert health(tenant(READY)) == ("Healthy", "Provisioned")


def test_a_tenant_retrying_a_backend_is_progressing_with_the_reason() -> None:
    assert {c["type"] for c in RECONCILING["conditions"]} >= {"Ready", "Reconciling"}
    assert health(tenant(RECONCILING)) == ("Progressing", "pulsar: 503")


def test_a_stalled_tenant_is_degraded_with_the_message() -> None:
    assert health(tenant(STALLED)) == ("Degraded", "access denied")


def test_recovery_removes_the_abnormal_conditions_and_is_healthy_again() -> None:
    recovered = tenant_status(STALLED, NAMES, report(), generation=1)
    assert health(tenant(recovered)) == ("Healthy", "Provisioned")


@pytest.mark.parametrize(
    "obj",
    [
        tenant(
            with_condition(READY, ConditionType.RECONCILING, False, "", "", phase="Paused"),
            spec={"paused": True},
        ),
        tenant(
            with_condition(RECONCILING, ConditionType.RECONCILING, False, "", "", phase="Paused"),
            metadata={"annotations": {PAUSE_ANNOTATION: "true"}},
        ),
    ],
    ids=["spec.paused", "annotation"],
)
def test_a_paused_tenant_is_suspended(obj: dict[str, Any]) -> None:
    assert health(obj)[0] == "Suspended"


def test_a_tenant_being_deleted_is_progressing_even_if_it_was_ready() -> None:
    obj = tenant(READY, metadata={"deletionTimestamp": "2026-11-26T12:00:00Z"})
    assert health(obj)[0] == "Progressing"


def test_a_new_tenant_without_status_waits_for_the_operator() -> None:
    assert health(tenant(None)) == ("Progressing", "Waiting for the operator")


def test_a_spec_change_not_yet_observed_is_progressing_not_healthy() -> None:
    status, message = health(tenant(READY, generation=2))
    assert status == "Progressing"
    assert "generation 2" in message


def _job(status: ProcessingJobStatus) -> dict[str, Any]:
    return {
        "kind": "ProcessingJob",
        "metadata": {"name": "job", "namespace": "tenant-acme", "generation": 1},
        "spec": {"dataset": "drive-01", "operations": ["thumbnail"]},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def test_processing_jobs_complete_and_failed() -> None:
    complete = set_condition([], ConditionType.COMPLETE, True, "AllProcessed", "", 1)
    failed = set_condition([], ConditionType.FAILED, True, "DeadLettered", "3 items failed", 1)
    running = set_condition([], ConditionType.RECONCILING, True, "FanningOut", "", 1)
    status = ProcessingJobStatus(observed_generation=1, phase="Running")
    assert health(_job(status.model_copy(update={"conditions": complete})))[0] == "Healthy"
    assert health(_job(status.model_copy(update={"conditions": failed}))) == (
        "Degraded",
        "3 items failed",
    )
    assert health(_job(status.model_copy(update={"conditions": running})))[0] == "Progressing"
    cancelled = status.model_copy(update={"phase": JobPhase.CANCELLED})
    assert health(_job(cancelled))[0] == "Suspended"


def test_datasets_follow_ready_and_fall_back_to_the_phase() -> None:
    ready = set_condition([], ConditionType.READY, True, "Imported", "", 1)
    base = {"kind": "Dataset", "metadata": {"name": "d", "generation": 1}, "spec": {}}

    def dataset(status: DatasetStatus) -> dict[str, Any]:
        return {**base, "status": status.model_dump(mode="json", by_alias=True)}

    assert health(dataset(DatasetStatus(observed_generation=1, conditions=ready)))[0] == "Healthy"
    assert health(dataset(DatasetStatus(observed_generation=1, phase="Importing"))) == (
        "Progressing",
        "Importing",
    )
    assert health(dataset(DatasetStatus(observed_generation=1, phase="Failed")))[0] == "Degraded"
