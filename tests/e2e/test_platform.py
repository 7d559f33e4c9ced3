"""The platform as pods: operator and API in-cluster, tenant workers on the node.

Everything here goes through the cluster the way its users do: Tenants applied to the
apiserver, logs and exec through the apiserver and kubelet, pods the operator must explain.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from kubernetes.stream import portforward

from annostack.devstack.platform import API, NAMESPACE, OPERATOR, Platform
from tests.e2e.conftest import ClusterTenants
from tests.e2e.pods import pods, run_in, running_ready
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    # The Kubernetes client's exec websocket leaves its TLS socket to the garbage collector
    # (kubernetes-client/python's WSClient); the ResourceWarning is the library's, not a leak of
    # ours, and would otherwise surface as an error in whichever test runs next.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_operator_and_api_run_as_pods_under_their_own_service_accounts(
    platform: Platform, core: client.CoreV1Api
) -> None:
    serving: dict[str, client.V1Pod] = {}
    for name in (OPERATOR, API):

        def one_ready(name: str = name) -> bool:
            ready = [p for p in pods(core, NAMESPACE, f"app.kubernetes.io/name={name}")]
            ready = [p for p in ready if running_ready(p)]
            if len(ready) == 1:
                serving[name] = ready[0]
            return len(ready) == 1

        wait_for(one_ready, timeout=120, what=f"one {name} pod Running and Ready")
        pod = serving[name]
        assert pod.spec.service_account_name == name
        assert pod.spec.containers[0].image == getattr(platform.images, name.split("-")[1]).ref
        assert pod.spec.node_name == platform.stack.settings.node.name
    # Logs and exec travel apiserver -> kubelet (its serving certificate, the apiserver's
    # client certificate, kubelet's webhook authorisation).
    operator = serving[OPERATOR]

    def logged() -> bool:
        log = core.read_namespaced_pod_log(operator.metadata.name, NAMESPACE)
        return "kopf" in log.lower() or "annostack" in log.lower()

    wait_for(logged, timeout=60, what="the operator's log read through kubelet")
    api = serving[API]
    assert (
        run_in(core, api.metadata.name, NAMESPACE, "import os; print(os.getuid())").strip()
        == "10001"
    )
    assert forwarded_get(core, api.metadata.name, 8000, "/healthz").startswith("HTTP/1.1 200")


def forwarded_get(core: client.CoreV1Api, pod: str, port: int, path: str) -> str:
    """`kubectl port-forward <pod> <port>` and a GET through it: the apiserver's port-forward
    stream to kubelet, and kubelet's into the pod's network namespace. The reply's head."""
    forward = portforward(
        core.connect_get_namespaced_pod_portforward, pod, NAMESPACE, ports=str(port)
    )
    tunnel = forward.socket(port)
    tunnel.settimeout(30)
    tunnel.sendall(f"GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n".encode())
    reply = b""
    while chunk := tunnel.recv(65536):
        reply += chunk
    tunnel.close()
    assert forward.error(port) is None, forward.error(port)
    return reply.decode(errors="replace")


def test_a_worker_image_that_cannot_start_is_reported_and_recovers(
    platform: Platform, tenants: ClusterTenants
) -> None:
    # A plan small enough for a two-core node beside the operator and the API.
    name = tenants.create(
        plan={"workerCpu": "250m", "workerMemory": "512Mi"},
        workers={"minReplicas": 1, "maxReplicas": 1},
        workerImage="localhost/annostack/worker:missing",
    )
    tenants.wait_condition(name, "WorkersReady", "False", timeout=120)

    def reason() -> str:
        found = tenants.condition(name, "WorkersReady")
        return str(found["reason"]) if found else ""

    wait_for(
        lambda: reason() == "ImageMissing", timeout=120, what="WorkersReady reason ImageMissing"
    )
    ready = tenants.condition(name, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert "localhost/annostack/worker:missing" in ready["message"]
    tenants.patch(name, {"workerImage": platform.images.worker.ref})
    tenants.wait_condition(name, "WorkersReady", "True", timeout=180)
    tenants.wait_condition(name, "Ready", "True")


def test_the_operator_pod_deleted_mid_reconcile_is_replaced_and_converges_every_tenant(
    core: client.CoreV1Api, tenants: ClusterTenants
) -> None:
    names = [tenants.create() for _ in range(3)]
    time.sleep(0.5)  # let the operator start on them: the point is an interrupted reconcile
    (operator,) = pods(core, NAMESPACE, f"app.kubernetes.io/name={OPERATOR}")
    core.delete_namespaced_pod(operator.metadata.name, NAMESPACE, grace_period_seconds=0)

    def replaced() -> bool:
        current = pods(core, NAMESPACE, f"app.kubernetes.io/name={OPERATOR}")
        return any(p.metadata.uid != operator.metadata.uid and running_ready(p) for p in current)

    wait_for(replaced, timeout=120, what="a new operator pod Ready")
    for name in names:
        tenants.wait_condition(name, "Ready", "True", timeout=180)


def test_a_node_that_stops_reporting_is_named_as_the_cause_and_then_recovers(
    platform: Platform, core: client.CoreV1Api, tenants: ClusterTenants
) -> None:
    """kubelet stopped (its pods keep running, as when a node's kubelet dies): once the node
    controller gives up on the node, the tenant's WorkersReady names it; kubelet back, Ready."""
    name = tenants.create(
        plan={"workerCpu": "250m", "workerMemory": "512Mi"},
        workers={"minReplicas": 1, "maxReplicas": 1},
    )
    tenants.wait_condition(name, "WorkersReady", "True", timeout=240)

    def reason() -> str:
        found = tenants.condition(name, "WorkersReady")
        return str(found["reason"]) if found else ""

    platform.stack.stop("kubelet")
    try:
        # The node controller waits out its grace period (50 s) before marking the pods.
        wait_for(lambda: reason() == "NodeNotReady", timeout=180, what="WorkersReady NodeNotReady")
        ready = tenants.condition(name, "Ready")
        assert ready is not None and ready["status"] == "False"
        assert platform.stack.settings.node.name in ready["message"]
    finally:
        platform.stack.start("kubelet")
    tenants.wait_condition(name, "WorkersReady", "True", timeout=180)
    tenants.wait_condition(name, "Ready", "True")
    for app in (OPERATOR, API):  # the platform's own pods serve again for the tests after
        wait_for(
            lambda app=app: any(
                running_ready(p) for p in pods(core, NAMESPACE, f"app.kubernetes.io/name={app}")
            ),
            timeout=120,
            what=f"{app} Ready again",
        )
