"""Fixtures shared by the integration tiers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pulsar
import pytest
import yaml
from kubernetes import client
from pydantic import SecretStr

from annostack.adapters.kube import Kube
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.apps.testing import ApiProcess
from annostack.apps.testing import api_process as run_api_process
from annostack.devstack.components import Redis
from annostack.devstack.platform import install_crds
from annostack.devstack.stack import Stack
from annostack.domain.tenants import TenantSpec
from annostack.services.tenancy import TenantDirectory
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings

ROOT = Path(__file__).parents[2]
SYSTEM_NAMESPACE = "annostack-system"


def pulsar_client(settings: Settings, **options: Any) -> pulsar.Client:
    """A Pulsar client with the settings' token (the operator's, a superuser, in tests)."""
    token = settings.pulsar.token.get_secret_value()
    return pulsar.Client(
        settings.pulsar.service_url, authentication=client_authentication(token), **options
    )


def pulsar_admin(settings: Settings) -> httpx.Client:
    """The admin REST API (`/admin/v2`) with the settings' token."""
    token = settings.pulsar.token.get_secret_value()
    return httpx.Client(
        base_url=f"{settings.pulsar.admin_url}/admin/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.fixture(scope="session")
def redis_admin_url(local_stack: Stack) -> str:
    """The stack's Redis superuser: for tests that inspect or break Redis itself."""
    component = local_stack.component("redis")
    assert isinstance(component, Redis)
    return component.admin_url


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
    install_crds(admin_kube)


def service_account_kubeconfig(
    admin_kube: Kube, manifests: list[Path], account: str, path: Path
) -> Path:
    """Apply a component's RBAC manifests; write a kubeconfig with a token of its account only.

    Components under test run with exactly the permissions their manifests grant, so a missing
    rule fails a test rather than a deployment.
    """
    for manifest in manifests:
        for doc in load_documents(manifest):
            admin_kube.apply(doc)
    token = client.CoreV1Api(admin_kube.api).create_namespaced_service_account_token(
        account, SYSTEM_NAMESPACE, {"spec": {"expirationSeconds": 6 * 3600}}
    )
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    config["users"] = [{"name": account, "user": {"token": token.status.token}}]
    config["contexts"][0]["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def api_settings(
    local_stack: Stack,
    stack_settings: Settings,
    admin_kube: Kube,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """Settings for an API that talks to Kubernetes as the API's ServiceAccount, and to Redis
    and Pulsar as the API's own users."""
    manifests = ROOT / "manifests/base"
    kubeconfig = service_account_kubeconfig(
        admin_kube,
        [manifests / "operator/namespace.yaml", manifests / "api/rbac.yaml"],
        "annostack-api",
        tmp_path_factory.mktemp("api") / "kubeconfig",
    )
    kubernetes = stack_settings.kubernetes.model_copy(update={"kubeconfig": kubeconfig})
    env = local_stack.api_env()
    redis = stack_settings.redis.model_copy(update={"url": SecretStr(env["ANNOSTACK_REDIS__URL"])})
    pulsar_settings = stack_settings.pulsar.model_copy(
        update={
            "token": SecretStr(env["ANNOSTACK_PULSAR__TOKEN"]),
            "token_signing_key": SecretStr(""),
        }
    )
    return stack_settings.model_copy(
        update={"kubernetes": kubernetes, "redis": redis, "pulsar": pulsar_settings}
    )


@pytest.fixture(scope="session")
def api_process(
    api_settings: Settings,
    local_stack: Stack,
    installed_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiProcess]:
    """`annostack api run` as its own process (as the API's ServiceAccount, with the API's own
    Redis user and Pulsar token): measurable."""
    kubeconfig = str(api_settings.kubernetes.kubeconfig)
    env = {**os.environ, **local_stack.api_env(), "ANNOSTACK_KUBERNETES__KUBECONFIG": kubeconfig}
    with run_api_process(env, tmp_path_factory.mktemp("api-process") / "api.log") as process:
        yield process


def provision(provisioner: TenantProvisioner, name: str, spec: TenantSpec) -> None:
    provisioner.provision(name, spec)
