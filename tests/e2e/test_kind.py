"""e2e tier (GitLab `e2e` job only): the dev overlay on a real kind cluster, with the images
this pipeline built.

The job loads the images into kind and points the overlay at them (`kustomize edit set
image`); this module renders the overlay, installs the Prometheus Operator CRDs it needs
(vendored, published schemas), applies everything with server-side apply, waits for the
operator Deployment to be Available, then creates a Tenant. kind has no TiDB, S3 or Pulsar,
so what is checked is what the cluster alone proves: the operator runs in-cluster under its
least-privilege RBAC, creates the tenant's namespace and reports status that the Argo CD
health check reads.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kind]

ROOT = Path(__file__).parents[2]
MONITORING_CRDS = sorted((ROOT / "tests/data/thirdparty-crds").glob("monitoring.coreos.com_*"))
FIELD_MANAGER = "annostack-e2e"


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def api() -> client.ApiClient:
    return config.new_client_from_config(config_file=os.environ["KUBECONFIG"])


def apply(dynamic: DynamicClient, obj: dict[str, Any]) -> None:
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    dynamic.server_side_apply(
        resource,
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


def established(extensions: client.ApiextensionsV1Api) -> bool:
    return all(
        any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
        for crd in extensions.list_custom_resource_definition().items
    )


@pytest.fixture(scope="module")
def deployed(api: client.ApiClient) -> None:
    kustomize = os.environ.get("ANNOSTACK_E2E_KUSTOMIZE", "kustomize")
    rendered = subprocess.run(
        [kustomize, "build", str(ROOT / "manifests/overlays/dev")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = documents(rendered)
    dynamic = DynamicClient(api)
    extensions = client.ApiextensionsV1Api(api)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for path in MONITORING_CRDS:
        crds.extend(documents(path.read_text()))
    for crd in crds:
        apply(dynamic, crd)
    wait_for(lambda: established(extensions), timeout=60, what="CRDs established")
    dynamic.resources.invalidate_cache()
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    for obj in namespaces + [o for o in objects if o not in crds and o not in namespaces]:
        apply(dynamic, obj)


def test_the_operator_becomes_available(api: client.ApiClient, deployed: None) -> None:
    apps = client.AppsV1Api(api)

    def available() -> bool:
        status = apps.read_namespaced_deployment("annostack-operator", "annostack-system").status
        return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])

    wait_for(available, timeout=300, what="annostack-operator Available")


@pytest.fixture
def tenant(api: client.ApiClient, deployed: None) -> Iterator[str]:
    objects = client.CustomObjectsApi(api)
    name = f"e2e{uuid.uuid4().hex[:6]}"
    spec: dict[str, Any] = {"displayName": "e2e"}
    if image := os.environ.get("ANNOSTACK_E2E_WORKER_IMAGE"):
        spec["workerImage"] = image
    body = {
        "apiVersion": "annostack.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": spec,
    }
    objects.create_cluster_custom_object("annostack.io", "v1alpha1", "tenants", body)
    yield name
    objects.delete_cluster_custom_object("annostack.io", "v1alpha1", "tenants", name)


def test_a_tenant_gets_its_namespace_and_a_status_argocd_reads(
    api: client.ApiClient, tenant: str
) -> None:
    objects = client.CustomObjectsApi(api)

    def get() -> dict[str, Any]:
        obj: dict[str, Any] = objects.get_cluster_custom_object(
            "annostack.io", "v1alpha1", "tenants", tenant
        )
        return obj

    def namespace_ready() -> bool:
        conditions = get().get("status", {}).get("conditions", [])
        return any(c["type"] == "NamespaceReady" and c["status"] == "True" for c in conditions)

    wait_for(namespace_ready, timeout=180, what="NamespaceReady")
    namespace = client.CoreV1Api(api).read_namespace(f"tenant-{tenant}")
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"

    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(get(), recursive=True)
    script = (ROOT / "manifests/gitops/argocd/health.lua").read_text()
    health = runtime.execute(script)
    # No database, bucket or Pulsar in kind: the tenant keeps retrying, never Healthy.
    assert health["status"] in {"Progressing", "Degraded"}
