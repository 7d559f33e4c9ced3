"""The e2e tier: the platform as pods on a real node, with the images built from this tree.

By default (`make test`) the cluster is the local stack's own node: the session fixture builds
the images (cached by their inputs), loads them into the node's containerd and deploys the
`local` overlay (`annostack dev platform` without the demo tenant). If a development operator
is already running there (`make dev`), it is the one under test; the integration tier's own
operator process pauses it and restores it (see tests/integration/operator/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from annostack.devstack.platform import Platform
from annostack.devstack.stack import Stack
from annostack.domain.tenants import API_GROUP, API_VERSION
from annostack.services.tenancy import TenantDirectory, create_api_token
from annostack.settings import Settings
from tests.e2e.pods import running_ready
from tests.support import wait_for


@pytest.fixture(scope="session")
def platform(local_stack: Stack, pytestconfig: pytest.Config) -> Platform:
    platform = Platform(local_stack)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # image builds take minutes on a cold cache
        platform.deploy(platform.load_images())
    return platform


@pytest.fixture(scope="session")
def core(platform: Platform) -> client.CoreV1Api:
    return client.CoreV1Api(platform.kube.api)


@pytest.fixture(scope="session")
def apps(platform: Platform) -> client.AppsV1Api:
    return client.AppsV1Api(platform.kube.api)


class ClusterTenants:
    """Tenants created as a platform admin does (kubectl apply), deleted with their data."""

    def __init__(self, platform: Platform) -> None:
        self.objects = client.CustomObjectsApi(platform.kube.api)
        self.platform = platform
        self.created: list[str] = []

    def create(self, **spec: Any) -> str:
        name = f"e{uuid.uuid4().hex[:7]}"
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": {"displayName": name, "deletionPolicy": "Delete", **spec},
        }
        self.objects.create_cluster_custom_object(API_GROUP, API_VERSION, "tenants", body)
        self.created.append(name)
        return name

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_cluster_custom_object(
            API_GROUP, API_VERSION, "tenants", name
        )
        return found

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_cluster_custom_object(
            API_GROUP, API_VERSION, "tenants", name, {"spec": spec}
        )

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_condition(self, name: str, type_: str, status: str, timeout: float = 120) -> None:
        def holds() -> bool:
            found = self.condition(name, type_)
            return found is not None and found["status"] == status

        wait_for(holds, timeout=timeout, what=f"Tenant {name} {type_}={status}")

    def delete_all(self) -> None:
        for name in self.created:
            try:
                self.objects.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def tenants(platform: Platform) -> Iterator[ClusterTenants]:
    made = ClusterTenants(platform)
    yield made
    made.delete_all()


@pytest.fixture(scope="session")
def directory(platform: Platform, stack_settings: Settings) -> Iterator[TenantDirectory]:
    directory = TenantDirectory(platform.kube, stack_settings.db)
    yield directory
    directory.close()


def api_token(directory: TenantDirectory, tenant: str) -> str:
    """An API token for the tenant, as `annostack api token <tenant>` makes one."""
    return create_api_token(directory.get(tenant), "e2e")


@pytest.fixture(scope="session")
def scraper(platform: Platform, core: client.CoreV1Api) -> Iterator[tuple[str, str]]:
    """A pod in a namespace labelled for monitoring: the one peer the NetworkPolicies let
    reach workers' and the operator's metrics ports (Prometheus's place in a cluster)."""
    namespace = f"e2e-monitoring-{uuid.uuid4().hex[:6]}"
    labels = {"annostack.io/role": "monitoring", "pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels))
    )
    name = "scraper"
    security = client.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
    container = client.V1Container(
        name="scraper",
        image=platform.images.api.ref,
        command=["python", "-c", "import signal; signal.pause()"],
        security_context=security,
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "64Mi"}),
    )
    spec = client.V1PodSpec(containers=[container], termination_grace_period_seconds=0)
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=spec)
    )
    wait_for(
        lambda: running_ready(core.read_namespaced_pod(name, namespace)),
        timeout=120,
        what="the scraper pod Ready",
    )
    yield namespace, name
    core.delete_namespace(namespace)
