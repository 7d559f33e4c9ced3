"""Manifests against the real apiserver of the local stack.

`kustomize` is the binary `annostack dev up` builds from the Go module proxy (the fixture
builds it too when missing, and fails when it cannot). `dry_run_cluster` installs, for real,
what the manifests' objects need to be validated: annostack's CRDs and kopf's peering CRD
(idempotent server-side apply, the same objects the operator tests install and keep) and the
Prometheus Operator and KEDA CRDs from tests/data/thirdparty-crds (their published schemas,
removed again if this session created them: a served ScaledObject API switches an operator to
KEDA mode, which the operator tests that follow must not inherit).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from annostack.adapters.kube import Kube
from annostack.devstack.builds import ensure_kustomize
from annostack.devstack.stack import Stack
from annostack.settings import Settings
from tests.support import wait_for

ROOT = Path(__file__).parents[3]
OVERLAYS = ("dev", "test", "prod")
THIRD_PARTY_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_podmonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
    "keda.sh_scaledobjects.yaml",
    "keda.sh_triggerauthentications.yaml",
)
PRODUCT_NAMESPACE = "annostack-system"
FIELD_MANAGER = "annostack-delivery-tests"

Manifest = dict[str, Any]


def documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def kustomize(local_stack: Stack) -> Path:
    return ensure_kustomize(local_stack.settings)


class Renderer:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def __call__(self, directory: Path) -> list[Manifest]:
        done = subprocess.run(
            [str(self.binary), "build", str(directory)], capture_output=True, text=True
        )
        assert done.returncode == 0, f"kustomize build {directory} failed:\n{done.stderr}"
        return documents(done.stdout)


@pytest.fixture(scope="session")
def render(kustomize: Path) -> Renderer:
    return Renderer(kustomize)


def _established(extensions: client.ApiextensionsV1Api, names: set[str]) -> bool:
    served = {
        crd.metadata.name
        for crd in extensions.list_custom_resource_definition().items
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
    }
    return names <= served


# Package scope: the third-party CRDs are gone again before other integration packages run.
@pytest.fixture(scope="package")
def dry_run_cluster(stack_settings: Settings) -> Iterator[Kube]:
    kube = Kube(stack_settings.kubernetes)
    extensions = client.ApiextensionsV1Api(kube.api)
    ours = [*sorted((ROOT / "crds").glob("*.yaml"))]
    ours.append(ROOT / "manifests/base/operator/kopf-peering-crd.yaml")
    wanted: set[str] = set()
    for path in ours:
        for doc in documents(path.read_text()):
            if doc["kind"] == "CustomResourceDefinition":
                kube.apply(doc)
                wanted.add(doc["metadata"]["name"])
    created: list[str] = []
    for name in THIRD_PARTY_CRDS:
        (crd,) = documents((ROOT / "tests/data/thirdparty-crds" / name).read_text())
        wanted.add(crd["metadata"]["name"])
        try:
            extensions.create_custom_resource_definition(crd)
            created.append(crd["metadata"]["name"])
        except client.ApiException as error:
            if error.status != 409:  # already there (an earlier or parallel run): keep it
                raise
    wait_for(lambda: _established(extensions, wanted), timeout=60, what="CRDs established")
    yield kube
    for name in created:
        extensions.delete_custom_resource_definition(name)
    # Deletion is asynchronous; later tests create some of these CRDs again. While KEDA's API
    # was served, the running operators handed their tenants to KEDA (within their 15 s check)
    # and wrote ScaledObjects, which the apiserver removes before the CRD goes: over a minute.
    wait_for(
        lambda: (
            not {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
            & set(created)
        ),
        timeout=240,
        what="third-party CRDs removed",
    )
    kube.close()


@pytest.fixture
def scratch_namespace(dry_run_cluster: Kube) -> Iterator[str]:
    """A real, empty namespace to dry-run namespaced objects in, deleted afterwards.

    Namespaced objects cannot be dry-run into a namespace that does not exist, and
    annostack-system belongs to the operator tests; the rendered objects are moved here.
    """
    name = f"delivery-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(dry_run_cluster.api)
    core.create_namespace({"metadata": {"name": name, "labels": {"annostack.io/test": "delivery"}}})
    yield name
    core.delete_namespace(name)
