"""The operator under test: a real process, with exactly the RBAC the manifests grant it.

Session fixtures install the CRDs (from crds/), kopf's peering CRD and the operator's
ServiceAccount, ClusterRole and binding (from manifests/), mint a token for that account and
start `annostack operator run` with a kubeconfig holding only that token — as the pod would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from annostack.adapters.kube import Kube
from annostack.devstack.host_operator import OperatorProcess
from annostack.devstack.platform import Platform
from annostack.devstack.stack import Stack
from annostack.domain.tenants import API_GROUP, API_VERSION
from tests.integration.conftest import ROOT, service_account_kubeconfig
from tests.support import wait_for

OPERATOR_NAMESPACE = "annostack-system"
DRIFT_INTERVAL_SECONDS = 3


@pytest.fixture(scope="session")
def operator_kubeconfig(
    admin_kube: Kube, installed_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig with a token of the operator's ServiceAccount, nothing more."""
    manifests = ROOT / "manifests/base/operator"
    return service_account_kubeconfig(
        admin_kube,
        [manifests / "namespace.yaml", manifests / "rbac.yaml"],
        "annostack-operator",
        tmp_path_factory.mktemp("operator") / "kubeconfig",
    )


@pytest.fixture(scope="session")
def operator(
    local_stack: Stack,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    # The in-cluster operator (`make dev`, the e2e tier) would share kopf's peering: the tests
    # need theirs to be the only one, and give it back afterwards.
    env = {**os.environ, **local_stack.client_env()}
    env.pop("KUBECONFIG", None)
    env["ANNOSTACK_KUBERNETES__KUBECONFIG"] = str(operator_kubeconfig)
    env["ANNOSTACK_OPERATOR_DRIFT_INTERVAL_SECONDS"] = str(DRIFT_INTERVAL_SECONDS)
    env["ANNOSTACK_OPERATOR_RETRY_DELAY_SECONDS"] = "2"
    env["ANNOSTACK_OPERATOR_DELETE_RETRIES_BEFORE_STALLED"] = "2"
    env["ANNOSTACK_OPERATOR_STALLED_RETRY_DELAY_SECONDS"] = "5"
    # Jobs advance in small steps, so a test can act (kill, cancel) in the middle of a fan-out.
    env["ANNOSTACK_OPERATOR_JOB_INTERVAL_SECONDS"] = "1"
    env["ANNOSTACK_OPERATOR_JOB_FAN_OUT_SECONDS"] = "0.05"
    env["ANNOSTACK_OPERATOR_JOB_FAN_OUT_BATCH"] = "10"
    env["ANNOSTACK_OPERATOR_DATASET_INTERVAL_SECONDS"] = "2"
    env["ANNOSTACK_OPERATOR_DEAD_LETTER_INTERVAL_SECONDS"] = "2"
    env["ANNOSTACK_OPERATOR_ROTATION_GRACE_SECONDS"] = "2"
    log = tmp_path_factory.mktemp("operator-log") / "operator.log"
    # The dev platform's operator ports: this stack's own, shifted per checkout by
    # ANNOSTACK_DEV_PORTS__*, so two stacks on one machine never collide.
    ports = local_stack.settings.ports
    process = OperatorProcess(env, log, ports.operator_health, ports.operator_metrics)
    with Platform(local_stack).operator_paused():
        process.start()
        try:
            yield process
        finally:
            process.stop()


class Tenants:
    """Create, read and delete Tenant objects as a platform admin would (kubectl)."""

    def __init__(self, kube: Kube) -> None:
        self.api = client.CustomObjectsApi(kube.api)
        self.created: list[str] = []

    def create(self, spec: dict[str, Any], name: str | None = None) -> str:
        name = name or f"t{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.api.create_cluster_custom_object(API_GROUP, API_VERSION, "tenants", body)
        self.created.append(name)
        return name

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.api.get_cluster_custom_object(
                API_GROUP, API_VERSION, "tenants", name
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_cluster_custom_object(
            API_GROUP, API_VERSION, "tenants", name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.api.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        tenant = self.get(name) or {}
        conditions = tenant.get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_ready(self, name: str, timeout: float = 90) -> dict[str, Any]:
        def ready() -> bool:
            tenant = self.get(name) or {}
            status = tenant.get("status", {})
            condition = self.condition(name, "Ready")
            return (
                condition is not None
                and condition["status"] == "True"
                and status.get("observedGeneration") == tenant["metadata"]["generation"]
            )

        wait_for(ready, timeout=timeout, what=f"Tenant {name} Ready")
        tenant = self.get(name)
        assert tenant is not None
        return tenant

    def wait_gone(self, name: str, timeout: float = 90) -> None:
        wait_for(lambda: self.get(name) is None, timeout=timeout, what=f"Tenant {name} deleted")


@pytest.fixture
def tenants(admin_kube: Kube, operator: OperatorProcess) -> Iterator[Tenants]:
    made = Tenants(admin_kube)
    yield made
    for name in made.created:
        if made.get(name) is not None:
            made.patch_spec(name, {"deletionPolicy": "Delete"})
            made.delete(name)
    for name in made.created:
        made.wait_gone(name)
