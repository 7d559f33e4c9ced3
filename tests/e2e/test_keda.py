"""KEDA's path: the same backlog scaled by a real KEDA, then handed back to the operator.

KEDA's operator and external metrics adapter are built from `github.com/kedacore/keda/v2` and
started for this module only (`annostack.devstack.keda`), because a served ScaledObject API
switches the operator to KEDA for every tenant. The chain under test is the one a cluster with
KEDA runs: our operator writes a ScaledObject and a TriggerAuthentication with the tenant's own
Pulsar token → KEDA's Pulsar scaler reads the subscription backlog → KEDA activates the
Deployment from 0 → the HPA asks the apiserver for `external.metrics.k8s.io`, which the
aggregation layer proxies to KEDA's adapter → more workers → the queue drains → KEDA takes the
Deployment back to 0 after its cooldown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from annostack.devstack.keda import KedaMetricsAdapter, KedaOperator
from annostack.devstack.platform import Platform
from annostack.domain.tenants import TenantNames
from annostack.services.tenancy import TenantDirectory
from tests.e2e.conftest import ClusterTenants, api_token
from tests.e2e.pods import running_ready
from tests.e2e.traffic import SCALING_WORKER, upload_images, worker_pods
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ITEMS = 200
KEDA = ("keda.sh", "v1alpha1")
# The operator asks API discovery whether KEDA is served every 15 s; its next scale pass follows.
HANDOVER_SECONDS = 60


@pytest.fixture(scope="module")
def keda(platform: Platform, pytestconfig: pytest.Config) -> Iterator[None]:
    stack = platform.stack
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the first run builds KEDA: minutes
        stack.start(KedaOperator.name)
        stack.start(KedaMetricsAdapter.name)
    yield
    # As `dev down` does: the APIService and KEDA's CRDs go, the operator scales again.
    stack.stop(KedaMetricsAdapter.name, undo=True)
    stack.stop(KedaOperator.name, undo=True)


def scaled_object(objects: client.CustomObjectsApi, names: TenantNames) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            *KEDA, names.namespace, "scaledobjects", names.workers
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def ready(found: dict[str, Any] | None, type_: str = "Ready") -> bool:
    conditions = (found or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == type_ and c["status"] == "True" for c in conditions)


def event_reasons(core: client.CoreV1Api, namespace: str, name: str) -> set[str]:
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return {event.reason for event in events.items}


@pytest.mark.timeout(1200)  # handover, uploads, pod starts, the drain, cooldown, handback
def test_keda_scales_a_backlog_from_zero_and_back_then_hands_scaling_back(
    keda: None,
    platform: Platform,
    core: client.CoreV1Api,
    tenants: ClusterTenants,
    directory: TenantDirectory,
) -> None:
    objects = client.CustomObjectsApi(platform.kube.api)
    autoscaling = client.AutoscalingV2Api(platform.kube.api)
    # Uploads trickle in while the first worker consumes: a low target per replica makes the
    # backlog that builds up before it is Ready worth a second one.
    workers = {"minReplicas": 0, "maxReplicas": 2, "targetBacklogPerReplica": 20}
    name = tenants.create(
        plan=SCALING_WORKER, workers={**workers, "scaleDownStabilizationSeconds": 10}
    )
    names = TenantNames(tenant=name)
    tenants.wait_condition(name, "Ready", "True")
    wait_for(
        lambda: tenants.get(name).get("status", {}).get("autoscaler") == "keda",
        timeout=HANDOVER_SECONDS,
        what="the Tenant's status: autoscaler keda",
    )
    # Ready: KEDA's Pulsar scaler read the backlog with the tenant's own token.
    wait_for(
        lambda: ready(scaled_object(objects, names)),
        timeout=60,
        what=f"ScaledObject {names.workers} Ready",
    )
    hpa = f"keda-hpa-{names.workers}"
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa, names.namespace)
    assert not worker_pods(core, name), "minReplicas 0: no worker before there is work"

    desired: set[int] = set()  # what the HPA wanted, on every poll

    def hpa_wants() -> None:
        found = autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa, names.namespace)
        desired.add(int(found.status.desired_replicas or 0))

    auth = {"Authorization": f"Bearer {api_token(directory, name)}"}
    with httpx.Client(base_url=platform.api_url, headers=auth, timeout=30) as api:
        dataset, _ = upload_images(api, ITEMS)

        def a_worker_ready() -> bool:
            hpa_wants()
            return any(running_ready(p) for p in worker_pods(core, name))

        def processed() -> int:
            hpa_wants()
            return int(api.get(f"/v1/datasets/{dataset}").json()["processedCount"])

        wait_for(a_worker_ready, timeout=180, what="a worker pod Running and Ready")
        assert ready(scaled_object(objects, names), "Active"), "KEDA sees the backlog"
        wait_for(lambda: processed() >= ITEMS, timeout=420, what=f"{ITEMS} items processed")
        assert processed() == ITEMS, "each item counted once"

    # KEDA's operator alone only activates 0 -> 1; a second worker means the HPA read the
    # backlog through the aggregation layer from KEDA's adapter (over 20 per replica).
    assert max(desired) == 2, f"the HPA wanted {sorted(desired)}"
    wait_for(lambda: not worker_pods(core, name), timeout=240, what="worker pods back to 0")
    reasons = event_reasons(core, names.namespace, names.workers)
    assert {"KEDAScaleTargetActivated", "KEDAScaleTargetDeactivated"} <= reasons, reasons

    # KEDA taken out of the cluster: the operator scales the tenant again.
    platform.stack.stop(KedaMetricsAdapter.name, undo=True)
    platform.stack.stop(KedaOperator.name, undo=True)
    wait_for(
        lambda: tenants.get(name).get("status", {}).get("autoscaler") == "builtin",
        timeout=HANDOVER_SECONDS,
        what="the Tenant's status: autoscaler builtin again",
    )
    with pytest.raises(client.ApiException) as gone:
        autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa, names.namespace)
    assert gone.value.status == 404, "KEDA's HPA went with its ScaledObject"
