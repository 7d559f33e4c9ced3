"""The operator's own queue-depth scaler, and the switch to KEDA where KEDA is installed."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from annostack.domain.scaling import (
    Stabilizer,
    recommend,
    scaled_object,
    trigger_authentication,
)
from annostack.domain.tenants import (
    DEAD_LETTER_TOPIC,
    PROCESSING_TOPICS,
    WORKER_SUBSCRIPTION,
    TenantNames,
    TenantSpec,
)
from annostack.services.tenant_credentials import PULSAR_TOKEN_KEY
from annostack.services.tenants import Backends

KEDA_API = ("keda.sh/v1alpha1", "ScaledObject")
KEDA_CHECK_SECONDS = 15.0
# Dead letters wait for a person, so a minute of staleness costs nothing; reading them every
# scale pass would add a third to the polling cost.
DEAD_LETTER_CHECK_SECONDS = 60.0


@dataclass(frozen=True)
class ScaleDecision:
    mode: str  # "builtin" | "keda"
    backlog: int | None
    current: int | None
    desired: int | None
    # The worker Deployment as read for this decision (None: not read, or it does not exist).
    deployment: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.mode == "builtin" and self.current != self.desired


class QueueScaler:
    def __init__(
        self, backends: Backends, dead_letter_check_seconds: float = DEAD_LETTER_CHECK_SECONDS
    ) -> None:
        self.b = backends
        self.dead_letter_check_seconds = dead_letter_check_seconds
        self._windows: defaultdict[str, Stabilizer] = defaultdict(Stabilizer)
        self._keda: tuple[float, bool] | None = None
        self._dead_letters_read: dict[str, float] = {}

    def keda_installed(self) -> bool:
        """Asked of API discovery at most every `KEDA_CHECK_SECONDS`, not for every tenant
        every few seconds: KEDA installed or removed is handed over within that time."""
        now = time.monotonic()
        if self._keda is None or now - self._keda[0] > KEDA_CHECK_SECONDS:
            self._keda = (now, self.b.kube.has_api(*KEDA_API))
        return self._keda[1]

    def backlog(self, names: TenantNames) -> int:
        return sum(
            self.b.pulsar.backlog(names.pulsar_namespace, topic, WORKER_SUBSCRIPTION)
            for topic in PROCESSING_TOPICS
        )

    def dead_letters(self, tenant: str, now: float | None = None) -> int | None:
        """Messages waiting in the tenant's dead-letter topic; None when read recently.

        The topic's `workers` subscription is created with it and nothing consumes from it, so
        its backlog is what a person has not yet looked at and cleared.
        """
        now = now if now is not None else time.monotonic()
        last = self._dead_letters_read.get(tenant)
        if last is not None and now - last < self.dead_letter_check_seconds:
            return None
        names = TenantNames(tenant=tenant)
        count = self.b.pulsar.backlog(
            names.pulsar_namespace, DEAD_LETTER_TOPIC, WORKER_SUBSCRIPTION
        )
        self._dead_letters_read[tenant] = now
        return count

    def scale(self, tenant: str, spec: TenantSpec, now: float | None = None) -> ScaleDecision:
        names = TenantNames(tenant=tenant)
        if self.keda_installed():
            # KEDA owns the replica count; ours stays out of its way (never both).
            pulsar = self.b.settings.pulsar
            authenticated = bool(pulsar.token_signing_key.get_secret_value())
            if authenticated:
                self.b.kube.apply(trigger_authentication(names, PULSAR_TOKEN_KEY))
            self.b.kube.apply(scaled_object(names, spec.workers, pulsar.admin_url, authenticated))
            return ScaleDecision("keda", None, None, None)
        deployment = self.b.kube.get("apps/v1", "Deployment", names.workers, names.namespace)
        if deployment is None:
            return ScaleDecision("builtin", None, None, None)
        current = int(deployment.spec.replicas or 0)
        found: dict[str, Any] = deployment.to_dict()
        backlog = self.backlog(names)
        window = float(spec.workers.scale_down_stabilization_seconds)
        desired = self._windows[tenant].decide(
            now if now is not None else time.monotonic(),
            recommend(backlog, spec.workers),
            current,
            window,
        )
        if desired != current:
            self.b.kube.scale_deployment(names.namespace, names.workers, desired)
        return ScaleDecision("builtin", backlog, current, desired, found)

    def forget(self, tenant: str) -> None:
        self._windows.pop(tenant, None)
        self._dead_letters_read.pop(tenant, None)
