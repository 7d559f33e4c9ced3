"""Two provisioned tenants, and the API served by a real uvicorn in a thread."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from annostack.apps.main import create_app
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.tenancy import TenantContext, TenantDirectory, create_api_token
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings


@dataclass(frozen=True)
class ApiTenant:
    name: str
    token: str
    context: TenantContext

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def provisioner(stack_settings: Settings) -> TenantProvisioner:
    return TenantProvisioner(Backends(stack_settings))


@pytest.fixture(scope="session")
def directory(
    provisioner: TenantProvisioner, stack_settings: Settings
) -> Iterator[TenantDirectory]:
    directory = TenantDirectory(provisioner.b.kube, stack_settings.db)
    yield directory
    directory.close()


def _tenant(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    name = f"api{uuid.uuid4().hex[:8]}"
    report = provisioner.reconcile(name, TenantSpec(display_name=name))
    assert report.ready, report.failures
    context = directory.get(name)
    yield ApiTenant(name, create_api_token(context, "tests"), context)
    provisioner.teardown(name, DeletionPolicy.DELETE)


@pytest.fixture(scope="session")
def tenant_a(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    yield from _tenant(provisioner, directory)


@pytest.fixture(scope="session")
def tenant_b(provisioner: TenantProvisioner, directory: TenantDirectory) -> Iterator[ApiTenant]:
    yield from _tenant(provisioner, directory)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """Run `app` on a real uvicorn in a thread; a client for it."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def api(stack_settings: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(stack_settings)) as client:
        yield client
