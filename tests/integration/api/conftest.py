"""Two provisioned tenants, and the API served by a real uvicorn in a thread."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.tenancy import TenantContext, TenantDirectory, create_api_token
from annostack.services.tenants import TenantProvisioner
from annostack.settings import Settings
from tests.integration.conftest import provision
from tests.integration.workloads import WorkerProcess


@dataclass(frozen=True)
class ApiTenant:
    name: str
    token: str
    context: TenantContext

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _tenant(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    name = f"api{uuid.uuid4().hex[:8]}"
    provision(provisioner, name, TenantSpec(display_name=name))
    context = directory.get(name)
    yield ApiTenant(name, create_api_token(context, "tests"), context)
    provisioner.teardown(name, DeletionPolicy.DELETE)


@pytest.fixture(scope="session")
def tenant_a(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    yield from _tenant(provisioner, directory)


@pytest.fixture(scope="module")
def owner(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    """A tenant of the module's own, for tests that count or list everything it holds."""
    yield from _tenant(provisioner, directory)


@pytest.fixture(scope="module")
def stranger(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    """Another tenant of the module's own, for a 404 on `owner`'s ids: ids are per tenant
    schema, so a busy `tenant_b` may well have a dataset 1 of its own and answer 200."""
    yield from _tenant(provisioner, directory)


@pytest.fixture(scope="module")
def worker(owner: ApiTenant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker on the host consuming `owner`'s topics for the module."""
    process = WorkerProcess(owner.context.connection, tmp_path_factory.mktemp("wk") / "worker.log")
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.stop()


@pytest.fixture(scope="session")
def tenant_b(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    yield from _tenant(provisioner, directory)


@pytest.fixture(scope="session")
def api(api_settings: Settings, installed_crds: None) -> Iterator[httpx.Client]:
    # As deployed: the API's own ServiceAccount, and the CRDs (archive uploads create jobs).
    with serve(create_app(api_settings)) as client:
        yield client
