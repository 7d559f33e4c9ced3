"""kube-apiserver + kube-controller-manager, through the `kubernetes` client the operator uses."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from annostack.settings import Settings
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_client(stack_settings: Settings) -> client.ApiClient:
    assert stack_settings.kubernetes.kubeconfig is not None
    return config.new_client_from_config(config_file=str(stack_settings.kubernetes.kubeconfig))


def test_applies_a_crd_and_serves_its_objects(api_client: client.ApiClient) -> None:
    group = f"smoke{uuid.uuid4().hex[:8]}.annostack.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        status = extensions.read_custom_resource_definition(f"widgets.{group}").status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    wait_for(established)
    objects = client.CustomObjectsApi(api_client)
    body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    objects.create_cluster_custom_object(group, "v1", "widgets", {**body, "spec": {"size": 3}})
    # The structural schema is enforced by the real apiserver.
    with pytest.raises(ApiException) as rejected:
        objects.create_cluster_custom_object(
            group, "v1", "widgets", {**body, "metadata": {"name": "bad"}, "spec": {"size": 0}}
        )
    assert rejected.value.status == 422
    extensions.delete_custom_resource_definition(f"widgets.{group}")


def test_controller_manager_finalizes_a_deleted_namespace(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    apps.create_namespaced_deployment(name, deployment)
    # The deployment controller creates the ReplicaSet, which creates the pods (left Pending:
    # there are no nodes), and the service-account controller fills in `default`.
    wait_for(lambda: len(apps.list_namespaced_replica_set(name).items) == 1)
    wait_for(lambda: len(core.list_namespaced_pod(name).items) == 2)
    wait_for(lambda: _exists(lambda: core.read_namespaced_service_account("default", name)))

    core.delete_namespace(name)
    # Only the namespace controller can remove the `kubernetes` finalizer.
    wait_for(lambda: not _exists(lambda: core.read_namespace(name)), timeout=90)


def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
