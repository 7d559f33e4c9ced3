"""Queue-depth autoscaling of a tenant's workers (pure decisions; the operator applies them).

desired = ceil(backlog / target per replica), clamped to [min, max]; 0 when the queue is
empty and min is 0. Up at once — a burst should be worked off now — but down only to the
highest recommendation of the stabilisation window, as the HorizontalPodAutoscaler does, so a
queue that drains in waves does not make workers flap. Where KEDA is installed, the same rule
is handed to KEDA as a ScaledObject instead (never both).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from annostack.domain.tenants import (
    PROCESSING_TOPICS,
    WORKER_SUBSCRIPTION,
    TenantNames,
    WorkerScaling,
)


def recommend(backlog: int, scaling: WorkerScaling) -> int:
    wanted = math.ceil(backlog / scaling.target_backlog_per_replica) if backlog > 0 else 0
    return max(scaling.min_replicas, min(scaling.max_replicas, wanted))


@dataclass
class Stabilizer:
    """Recommendations of the last window; scale-down follows their maximum."""

    history: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, recommendation: int, current: int, window: float) -> int:
        if not self.history:
            # After a restart we know nothing of the window: treat the current size as having
            # been recommended, so a restart never scales in early.
            self.history.append((now, current))
        self.history.append((now, recommendation))
        while self.history and self.history[0][0] < now - window:
            self.history.popleft()
        if recommendation >= current:
            return recommendation
        return max(r for _, r in self.history)


def trigger_authentication(names: TenantNames, token_key: str) -> dict[str, Any]:
    """KEDA's credentials for the Pulsar admin API: the tenant's own token, from its Secret
    (its role may read its own topics' stats, nothing else)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {
            "name": names.workers,
            "namespace": names.namespace,
            "labels": {"app.kubernetes.io/managed-by": "annostack-operator"},
        },
        "spec": {
            "secretTargetRef": [
                {"parameter": "bearerToken", "name": names.secret, "key": token_key}
            ]
        },
    }


def scaled_object(
    names: TenantNames, scaling: WorkerScaling, admin_url: str, authenticated: bool = False
) -> dict[str, Any]:
    """A KEDA ScaledObject with the Pulsar scaler on every processing topic's subscription;
    `authenticated`: with the tenant's token (`trigger_authentication`)."""
    auth: dict[str, Any] = {"authenticationRef": {"name": names.workers}} if authenticated else {}
    modes = {"authModes": "bearer"} if authenticated else {}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": names.workers,
            "namespace": names.namespace,
            "labels": {"app.kubernetes.io/managed-by": "annostack-operator"},
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": names.workers,
            },
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 5,
            "cooldownPeriod": max(scaling.scale_down_stabilization_seconds, 30),
            # If the scaler cannot read the backlog, keep the minimum rather than guess.
            "fallback": {"failureThreshold": 3, "replicas": max(scaling.min_replicas, 1)},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "pulsar",
                    "metadata": {
                        "adminURL": admin_url,
                        "topic": names.topic(topic),
                        "subscription": WORKER_SUBSCRIPTION,
                        "msgBacklogThreshold": str(scaling.target_backlog_per_replica),
                        **modes,
                    },
                    **auth,
                }
                for topic in PROCESSING_TOPICS
            ],
        },
    }
