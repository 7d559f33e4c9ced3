"""Fixtures shared by the integration tiers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from annostack.services.tenancy import TenantDirectory
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings


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
