"""Every overlay renders and every object it holds is accepted by the real apiserver.

Server-side apply with `dryRun=All` runs the apiserver's full admission and validation
(OpenAPI schemas of built-in kinds, the CRDs' structural schemas, RBAC escalation checks)
without storing anything.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from kubernetes.dynamic.exceptions import DynamicApiError

from annostack.adapters.kube import Kube
from tests.integration.delivery.conftest import (
    FIELD_MANAGER,
    OVERLAYS,
    PRODUCT_NAMESPACE,
    ROOT,
    Manifest,
    Renderer,
    documents,
)

pytestmark = pytest.mark.integration


def relocated(objects: list[Manifest], namespace: str) -> list[Manifest]:
    """The objects with annostack-system replaced by `namespace` (and nothing else changed)."""
    moved = copy.deepcopy(objects)
    for obj in moved:
        meta = obj["metadata"]
        if meta.get("namespace") == PRODUCT_NAMESPACE:
            meta["namespace"] = namespace
        if obj["kind"] == "Namespace" and meta["name"] == PRODUCT_NAMESPACE:
            meta["name"] = namespace
        for subject in obj.get("subjects", []):
            if subject.get("namespace") == PRODUCT_NAMESPACE:
                subject["namespace"] = namespace
    return moved


def dry_run(kube: Kube, obj: Manifest) -> str | None:
    """Server-side apply `obj` with dryRun=All; the apiserver's complaint, if any."""
    resource = kube.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    meta = obj["metadata"]
    try:
        kube.dynamic.server_side_apply(
            resource,
            body=obj,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            dry_run="All",
        )
    except DynamicApiError as error:
        return f"{obj['kind']}/{meta['name']}: {error.status} {error.summary()}"
    return None


def by_kind(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_is_accepted_by_the_real_apiserver(
    overlay: str, render: Renderer, dry_run_cluster: Kube, scratch_namespace: str
) -> None:
    objects = render(ROOT / "manifests" / "overlays" / overlay)
    namespaced = [o for o in objects if o["metadata"].get("namespace")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {PRODUCT_NAMESPACE}
    errors = [
        error
        for obj in relocated(objects, scratch_namespace)
        if (error := dry_run(dry_run_cluster, obj)) is not None
    ]
    assert not errors, "rejected by the apiserver:\n" + "\n".join(errors)


def test_a_broken_object_is_rejected_so_the_check_can_fail(
    render: Renderer, dry_run_cluster: Kube, scratch_namespace: str
) -> None:
    objects = relocated(render(ROOT / "manifests" / "overlays" / "dev"), scratch_namespace)
    rules = copy.deepcopy(by_kind(objects, "PrometheusRule", "annostack"))
    rules["spec"]["groups"][0]["rules"][0]["for"] = "fifteen minutes"
    hpa = copy.deepcopy(by_kind(objects, "HorizontalPodAutoscaler", "annostack-api"))
    hpa["spec"]["minReplicas"] = "two"
    assert dry_run(dry_run_cluster, rules) is not None
    assert dry_run(dry_run_cluster, hpa) is not None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_operator_runs_once_with_the_role_the_tests_use(overlay: str, render: Renderer) -> None:
    objects = render(ROOT / "manifests" / "overlays" / overlay)
    operator = by_kind(objects, "Deployment", "annostack-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "annostack-operator"
    (tested_role,) = [
        d
        for d in documents((ROOT / "manifests/base/operator/rbac.yaml").read_text())
        if d["kind"] == "ClusterRole"
    ]
    assert by_kind(objects, "ClusterRole", "annostack-operator")["rules"] == tested_role["rules"]
    assert by_kind(objects, "ClusterKopfPeering", "annostack")["metadata"].get("namespace") is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_tagged_for_the_environment(overlay: str, render: Renderer) -> None:
    objects = render(ROOT / "manifests" / "overlays" / overlay)
    expected_tag = {"dev": "dev", "test": "test", "prod": "main"}[overlay]
    for name in ("annostack-operator", "annostack-api"):
        (container,) = by_kind(objects, "Deployment", name)["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["image"].endswith(f":{expected_tag}"), container["image"]
    config = by_kind(objects, "ConfigMap", "annostack-endpoints")
    assert config["data"]["ANNOSTACK_ENVIRONMENT"] == {"dev": "dev"}.get(overlay, overlay)


def test_the_argocd_health_check_is_shipped_for_each_kind(render: Renderer) -> None:
    (config,) = render(ROOT / "manifests" / "gitops" / "argocd")
    assert (config["kind"], config["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    script = (ROOT / "manifests" / "gitops" / "argocd" / "health.lua").read_text()
    assert config["data"] == {
        f"resource.customizations.health.annostack.io_{kind}": script
        for kind in ("Tenant", "Dataset", "ProcessingJob")
    }


def test_dashboards_are_shipped_to_grafana(render: Renderer) -> None:
    objects = render(ROOT / "manifests" / "base")
    dashboards = [o for o in objects if o["metadata"].get("labels", {}).get("grafana_dashboard")]
    shipped = {name for o in dashboards for name in o["data"]}
    on_disk = {p.name for p in Path(ROOT / "manifests/base/monitoring/dashboards").glob("*.json")}
    assert shipped == on_disk == {"operator.json", "api.json", "workers.json"}


def test_the_argocd_config_is_accepted_by_the_real_apiserver(
    render: Renderer, dry_run_cluster: Kube, scratch_namespace: str
) -> None:
    (config,) = render(ROOT / "manifests" / "gitops" / "argocd")
    config["metadata"]["namespace"] = scratch_namespace  # Argo CD's own namespace, argocd
    assert dry_run(dry_run_cluster, config) is None
