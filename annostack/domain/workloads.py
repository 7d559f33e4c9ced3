"""Whether a Deployment's pods run, and if not, why: from the Deployment and its pods (pure).

A tenant's `WorkersReady` (and `annostack dev platform`'s wait for the operator and the API)
means what it says: the Deployment has observed its spec, its pods are
available (the Deployment's own `Available` condition, so a scale-up that keeps the minimum
available is not an outage), and no pod is stuck. When workers are missing the condition
names the first cause a person can act on, in this order: pods the apiserver refused to
create (quota, Pod Security), containers that cannot start (image missing, crash loop, bad
config), pods nothing can schedule, a node that stopped reporting. Zero desired replicas (no
backlog) is healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]

# Waiting reasons kubelet reports for a container, mapped to the condition's reason.
WAITING_REASONS = {
    "ErrImageNeverPull": "ImageMissing",
    "ErrImagePull": "ImageMissing",
    "ImagePullBackOff": "ImageMissing",
    "InvalidImageName": "ImageInvalid",
    "CrashLoopBackOff": "CrashLoopBackOff",
    "CreateContainerConfigError": "ContainerConfigError",
    "CreateContainerError": "ContainerConfigError",
    "RunContainerError": "ContainerConfigError",
}


@dataclass(frozen=True)
class DeploymentHealth:
    ready: bool
    reason: str
    message: str
    desired: int = 0
    available: int = 0


def _condition(obj: Obj, type_: str) -> Obj | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def needs_pod_details(deployment: Obj) -> bool:
    """Only a Deployment short of available pods is worth listing its pods for."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    return available < desired or int(status.get("unavailableReplicas") or 0) > 0


def deployment_health(deployment: Obj | None, pods: Sequence[Obj]) -> DeploymentHealth:
    if deployment is None:
        return DeploymentHealth(False, "DeploymentMissing", "the Deployment does not exist")
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    counts = f"{available}/{desired} pods available"
    observed = int(status.get("observedGeneration") or 0)
    if observed < int((deployment.get("metadata") or {}).get("generation") or 0):
        return DeploymentHealth(
            False, "Progressing", f"{counts}; rollout not observed yet", desired, available
        )
    problem = _replica_failure(deployment) or _pod_problem(pods)
    if problem is not None:
        reason, detail = problem
        return DeploymentHealth(False, reason, f"{counts}: {detail}", desired, available)
    if desired == 0:
        return DeploymentHealth(True, "ScaledToZero", "0 replicas wanted", 0, available)
    updated = int(status.get("updatedReplicas") or 0)
    if updated < desired:
        detail = f"{counts}; rollout in progress"
        return DeploymentHealth(False, "Progressing", detail, desired, available)
    # As `kubectl rollout status`: with surge, Available holds while an old pod still serves.
    if int(status.get("replicas") or 0) > updated:
        detail = f"{counts}; old pods still terminating"
        return DeploymentHealth(False, "Progressing", detail, desired, available)
    available_condition = _condition(deployment, "Available")
    condition_true = available_condition is not None and available_condition.get("status") == "True"
    if condition_true and available >= updated:
        return DeploymentHealth(True, "PodsAvailable", counts, desired, available)
    return DeploymentHealth(False, "PodsStarting", f"{counts}; starting", desired, available)


def _replica_failure(deployment: Obj) -> tuple[str, str] | None:
    """Pods the apiserver refused to create: quota, LimitRange, Pod Security admission."""
    failure = _condition(deployment, "ReplicaFailure")
    if failure is None or failure.get("status") != "True":
        return None
    return "PodsRejected", str(failure.get("message") or failure.get("reason"))


def _pod_problem(pods: Sequence[Obj]) -> tuple[str, str] | None:
    for finder in (_container_problem, _unschedulable, _node_lost):
        for pod in pods:
            found = finder(pod)
            if found is not None:
                return found
    return None


def _container_problem(pod: Obj) -> tuple[str, str] | None:
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = WAITING_REASONS.get(str(waiting.get("reason")))
        if reason is not None:
            detail = waiting.get("message") or waiting.get("reason")
            name = (pod.get("metadata") or {}).get("name", "?")
            return reason, f"pod {name}: {waiting.get('reason')}: {detail}"
    return None


def _unschedulable(pod: Obj) -> tuple[str, str] | None:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is None or scheduled.get("status") != "False":
        return None
    return "Unschedulable", str(scheduled.get("message") or scheduled.get("reason"))


def _node_lost(pod: Obj) -> tuple[str, str] | None:
    """A pod the node controller marked not ready because its node stopped reporting.

    The controller flips only the pod's `Ready` to False, with no reason (seen on 1.34), and
    leaves kubelet's last word, `ContainersReady` True, as it was: kubelet itself never
    reports that pair, since a container that is not ready makes it set both to False."""
    ready, containers = _condition(pod, "Ready"), _condition(pod, "ContainersReady")
    if ready is None or containers is None:
        return None
    if (ready.get("status"), containers.get("status")) != ("False", "True"):
        return None
    node = (pod.get("spec") or {}).get("nodeName", "?")
    return "NodeNotReady", f"node {node} is not ready (its kubelet stopped reporting)"
