"""Workers follow the queue: the built-in scaler on a real backlog, KEDA's schema for the rest."""

from __future__ import annotations

import orjson
import pytest
from kubernetes import client

from annostack.adapters.kube import Kube
from annostack.devstack.host_operator import OperatorProcess
from annostack.domain.scaling import scaled_object, trigger_authentication
from annostack.domain.tenants import TenantNames, WorkerScaling
from annostack.services.autoscaling import KEDA_API
from annostack.services.tenant_credentials import PULSAR_TOKEN_KEY
from annostack.settings import Settings
from tests.integration.conftest import ROOT, load_documents, pulsar_admin
from tests.integration.conftest import pulsar_client as new_pulsar_client
from tests.integration.operator.conftest import Tenants
from tests.support import wait_for

pytestmark = pytest.mark.integration


def test_builtin_scaler_follows_a_real_backlog_up_and_down(
    tenants: Tenants, operator: OperatorProcess, admin_kube: Kube, stack_settings: Settings
) -> None:
    workers = {"minReplicas": 0, "maxReplicas": 5, "targetBacklogPerReplica": 10,
               "scaleDownStabilizationSeconds": 3}  # fmt: skip
    name = tenants.create({"displayName": "Busy", "workers": workers})
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    apps = client.AppsV1Api(admin_kube.api)

    def replicas() -> int:
        return int(apps.read_namespaced_deployment("workers", names.namespace).spec.replicas)

    assert replicas() == 0, "idle tenants run no workers"
    pulsar_client = new_pulsar_client(stack_settings)
    try:
        producer = pulsar_client.create_producer(names.topic("thumbnails"))
        for item in range(35):  # no worker is running: the backlog stays
            producer.send(orjson.dumps({"tenant": name, "itemId": item, "key": "data/1/x.jpg"}))
    finally:
        pulsar_client.close()
    wait_for(lambda: replicas() == 4, timeout=30, what="scale up to ceil(35/10)")
    wait_for(
        lambda: (tenants.get(name) or {})["status"].get("replicas") == 4,
        timeout=15,
        what="status shows the backlog and the replicas",
    )
    assert (tenants.get(name) or {})["status"]["backlog"] == 35

    path = f"/persistent/{names.pulsar_namespace}/thumbnails/subscription/workers/skip_all"
    with pulsar_admin(stack_settings) as admin:
        assert admin.post(path).status_code == 204
    wait_for(lambda: replicas() == 0, timeout=30, what="back to zero after the window")


def test_the_keda_scaled_object_is_accepted_by_the_real_schema(
    tenants: Tenants, admin_kube: Kube, installed_crds: None
) -> None:
    name = tenants.create({"displayName": "Keda"})
    tenants.wait_ready(name)
    crds = [
        doc
        for kind in ("scaledobjects", "triggerauthentications")
        for doc in load_documents(ROOT / "tests/data/thirdparty-crds" / f"keda.sh_{kind}.yaml")
    ]
    extensions = client.ApiextensionsV1Api(admin_kube.api)
    for crd in crds:
        extensions.create_custom_resource_definition(crd)
    try:
        names = TenantNames(tenant=name)
        manifests = {
            "scaledobjects": scaled_object(names, WorkerScaling(), "http://pulsar:8080", True),
            "triggerauthentications": trigger_authentication(names, PULSAR_TOKEN_KEY),
        }
        objects = client.CustomObjectsApi(admin_kube.api)

        def accepted(plural: str) -> bool:
            # Under its own name: with KEDA's API served, the operator writes `workers` itself
            # within its 15 s discovery check, which is the hand-over working.
            meta = {**manifests[plural]["metadata"], "name": "schema-check"}
            manifest = {**manifests[plural], "metadata": meta}
            try:
                objects.create_namespaced_custom_object(
                    "keda.sh",
                    "v1alpha1",
                    manifest["metadata"]["namespace"],
                    plural,
                    manifest,
                    dry_run="All",
                )
            except client.ApiException as error:
                if error.status == 404:  # CRD not served yet
                    return False
                raise
            return True

        for plural in manifests:
            wait_for(lambda plural=plural: accepted(plural), timeout=30, what=f"{plural} accepted")
        assert admin_kube.has_api(*KEDA_API)
        # The dynamic client's discovery cache now holds ScaledObject; it must not outlive it.
        assert admin_kube.get(*KEDA_API, "schema-check", names.namespace) is None  # dry run
    finally:
        for crd in crds:
            extensions.delete_custom_resource_definition(crd["metadata"]["name"])
    wait_for(lambda: not admin_kube.has_api(*KEDA_API), timeout=30, what="KEDA's API seen as gone")
