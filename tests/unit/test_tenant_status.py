"""Between reconciles, a look at the workers moves WorkersReady and Ready together."""

from __future__ import annotations

from typing import Any

from annostack.domain.conditions import ConditionType
from annostack.domain.workloads import DeploymentHealth
from annostack.operator.status import BACKEND_CONDITIONS, with_workers


def provisioned() -> dict[str, Any]:
    condition = {"status": "True", "reason": "Ok", "lastTransitionTime": "2026-12-01T00:00:00Z"}
    types = [*BACKEND_CONDITIONS, ConditionType.READY]
    return {
        "observedGeneration": 2,
        "phase": "Ready",
        "conditions": [{"type": str(t), **condition} for t in types],
    }


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == type_), None)


def test_workers_that_cannot_start_make_the_tenant_not_ready_with_their_reason() -> None:
    missing = DeploymentHealth(
        False, "ImageMissing", "0/1 pods available: pod w: ErrImageNeverPull"
    )
    status = with_workers(provisioned(), missing)
    workers, ready = condition(status, "WorkersReady"), condition(status, "Ready")
    assert workers is not None and ready is not None
    assert (workers["status"], workers["reason"]) == ("False", "ImageMissing")
    assert (ready["status"], ready["reason"]) == ("False", "ImageMissing")
    assert "ErrImageNeverPull" in ready["message"]
    assert condition(status, "Reconciling") is not None and status["phase"] == "Reconciling"


def test_workers_back_make_the_tenant_ready_again() -> None:
    broken = with_workers(provisioned(), DeploymentHealth(False, "ImageMissing", "gone"))
    fixed = with_workers(broken, DeploymentHealth(True, "PodsAvailable", "1/1 pods available"))
    ready = condition(fixed, "Ready")
    assert ready is not None and ready["status"] == "True" and fixed["phase"] == "Ready"
    assert condition(fixed, "Reconciling") is None


def test_a_tenant_never_reconciled_is_left_to_its_first_reconcile() -> None:
    assert with_workers({}, DeploymentHealth(False, "ImageMissing", "x")).get("conditions") == []
