"""Deployment health: ready means pods available, and every shortfall names its cause."""

from __future__ import annotations

from typing import Any

from annostack.domain.workloads import deployment_health, needs_pod_details


def deployment(
    desired: int,
    available: int = 0,
    *,
    generation: int = 1,
    observed: int = 1,
    updated: int | None = None,
    total: int | None = None,
    **conditions: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "availableReplicas": available,
            "unavailableReplicas": max(desired - available, 0),
            "updatedReplicas": updated if updated is not None else desired,
            "replicas": total if total is not None else desired,
            "conditions": [
                {"type": kind, "status": status, "reason": reason, "message": message}
                for kind, (status, reason, message) in conditions.items()
            ],
        },
    }


def waiting_pod(reason: str, message: str = "") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}}
    return {
        "metadata": {"name": "w-1"},
        "status": {"containerStatuses": [{"name": "worker", "state": state}]},
    }


def test_zero_replicas_is_healthy() -> None:
    health = deployment_health(deployment(0), [])
    assert (health.ready, health.reason) == (True, "ScaledToZero")


def test_available_pods_are_ready_and_counted() -> None:
    health = deployment_health(
        deployment(2, 2, Available=("True", "MinimumReplicasAvailable", "")), []
    )
    assert (health.ready, health.reason, health.message) == (
        True,
        "PodsAvailable",
        "2/2 pods available",
    )


def test_pods_still_starting_are_not_ready() -> None:
    health = deployment_health(
        deployment(1, 0, Available=("False", "MinimumReplicasUnavailable", "")), []
    )
    assert (health.ready, health.reason) == (False, "PodsStarting")


def test_a_missing_image_is_named() -> None:
    pod = waiting_pod("ErrImageNeverPull", 'Container image "x:1" is not present with pull policy')
    health = deployment_health(deployment(1), [pod])
    assert (health.ready, health.reason) == (False, "ImageMissing")
    assert 'image "x:1" is not present' in health.message and "0/1 pods" in health.message


def test_a_crash_loop_is_named() -> None:
    health = deployment_health(deployment(2, 1), [waiting_pod("CrashLoopBackOff", "back-off 10s")])
    assert health.reason == "CrashLoopBackOff" and "1/2 pods" in health.message


def test_pods_refused_by_quota_are_named_before_anything_else() -> None:
    quota = 'pods "w-2" is forbidden: exceeded quota: tenant-quota, requested: pods=1'
    failing = deployment(3, 1, ReplicaFailure=("True", "FailedCreate", quota))
    health = deployment_health(failing, [waiting_pod("CrashLoopBackOff")])
    assert (health.reason, health.message) == ("PodsRejected", f"1/3 pods available: {quota}")


def test_unschedulable_pods_are_named() -> None:
    pod = {
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "False", "message": "0/1 nodes are available"}
            ]
        }
    }
    health = deployment_health(deployment(1), [pod])
    assert (health.reason, health.message) == (
        "Unschedulable",
        "0/1 pods available: 0/1 nodes are available",
    )


def pod_conditions(node: str | None = None, **conditions: str) -> dict[str, Any]:
    listed = [{"type": kind, "status": status} for kind, status in conditions.items()]
    return {"spec": {"nodeName": node}, "status": {"conditions": listed}}


def test_pods_of_a_node_that_stopped_reporting_are_named() -> None:
    # As the node controller leaves them (1.34): Ready False, no reason, ContainersReady True.
    lost = pod_conditions("node-1", Ready="False", ContainersReady="True")
    health = deployment_health(deployment(1, 0), [lost])
    assert (health.reason, health.message) == (
        "NodeNotReady",
        "0/1 pods available: node node-1 is not ready (its kubelet stopped reporting)",
    )


def test_a_pod_whose_container_is_not_ready_is_not_a_lost_node() -> None:
    # kubelet's own report of a failing readiness probe: both False.
    starting = pod_conditions("node-1", Ready="False", ContainersReady="False")
    assert deployment_health(deployment(1, 0), [starting]).reason == "PodsStarting"


def test_a_rollout_not_yet_observed_is_not_ready() -> None:
    health = deployment_health(deployment(1, 1, generation=3, observed=2), [])
    assert (health.ready, health.reason) == (False, "Progressing")


def test_a_missing_deployment_is_not_ready() -> None:
    assert deployment_health(None, []).reason == "DeploymentMissing"


def test_pods_are_read_only_when_some_are_short() -> None:
    assert not needs_pod_details(deployment(2, 2))
    assert needs_pod_details(deployment(2, 1))
    assert not needs_pod_details(deployment(0))


def test_a_rollout_still_replacing_pods_is_not_ready() -> None:
    rolling = deployment(2, 2, updated=1, Available=("True", "MinimumReplicasAvailable", ""))
    health = deployment_health(rolling, [])
    assert (health.ready, health.reason) == (False, "Progressing")
    assert "rollout in progress" in health.message


def test_a_rollout_whose_new_pod_is_not_yet_available_is_not_ready() -> None:
    # maxSurge 1: the new pod exists (updated 1/1) but the old one is still the available one,
    # so Available is True; the rollout is not done until the old pod is gone.
    surging = deployment(1, 1, total=2, Available=("True", "MinimumReplicasAvailable", ""))
    health = deployment_health(surging, [])
    assert (health.ready, health.reason) == (False, "Progressing")
    assert "old pods" in health.message


def test_updated_pods_not_yet_available_are_starting() -> None:
    replaced = deployment(2, 1, Available=("True", "MinimumReplicasAvailable", ""))
    health = deployment_health(replaced, [])
    assert (health.ready, health.reason) == (False, "PodsStarting")
