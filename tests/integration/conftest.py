"""Fixtures shared by the integration tiers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from annostack.adapters.kube import Kube
from annostack.services.tenancy import TenantDirectory
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings
from tests.support import wait_for

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def provisioner(stack_settings: Settings) -> Iterator[TenantProvisioner]:
    backends = Backends(stack_settings)
    yield TenantProvisioner(backends)
    backends.close()


@pytest.fixture(scope="session")
def directory(
    provisioner: TenantProvisioner, stack_settings: Settings
) -> Iterator[TenantDirectory]:
    directory = TenantDirectory(provisioner.b.kube, stack_settings.db)
    yield directory
    directory.close()


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="session")
def admin_kube(stack_settings: Settings) -> Kube:
    return Kube(stack_settings.kubernetes)


@pytest.fixture(scope="session")
def installed_crds(admin_kube: Kube) -> None:
    crd_files = [*sorted((ROOT / "crds").glob("*.yaml"))]
    crd_files.append(ROOT / "manifests/base/operator/kopf-peering-crd.yaml")
    later = []
    for path in crd_files:
        for doc in load_documents(path):
            if doc["kind"] == "CustomResourceDefinition":
                admin_kube.apply(doc)
            else:
                later.append(doc)
    extensions = client.ApiextensionsV1Api(admin_kube.api)

    def all_established() -> bool:
        crds = extensions.list_custom_resource_definition().items
        established = {
            crd.metadata.name
            for crd in crds
            if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
        }
        wanted = {f"{plural}.annostack.io" for plural in ("tenants", "datasets", "processingjobs")}
        return wanted | {"clusterkopfpeerings.kopf.dev"} <= established

    wait_for(all_established, what="CRDs established")
    for doc in later:
        admin_kube.apply(doc)
