"""The dev platform's API and tenant worker: an upload through one is processed by the other."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from annostack.devstack import processes
from annostack.devstack.platform import Platform
from annostack.devstack.stack import Stack
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.tenancy import TenantDirectory, create_api_token
from annostack.services.tenants import TenantProvisioner
from tests.integration.workloads import free_port, jpeg
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(local_stack: Stack, tmp_path: Path) -> Iterator[Platform]:
    """The dev platform's process management, on ports and pid files of this test only."""
    platform = Platform(local_stack)
    platform.api_pid_path, platform.api_log_path = tmp_path / "api.pid", tmp_path / "api.log"
    platform.worker_pid_path = tmp_path / "worker.pid"
    platform.worker_log_path = tmp_path / "worker.log"
    platform.api_port, platform.worker_port = free_port(), free_port()
    yield platform
    for pid in (platform.api_pid_path, platform.worker_pid_path):
        processes.stop(pid)


@pytest.fixture
def tenant(provisioner: TenantProvisioner) -> Iterator[str]:
    name = f"pf{uuid.uuid4().hex[:8]}"
    assert provisioner.reconcile(name, TenantSpec(display_name=name)).ready
    yield name
    provisioner.teardown(name, DeletionPolicy.DELETE)


def test_an_upload_through_the_platform_api_is_processed_by_its_worker(
    platform: Platform, tenant: str, directory: TenantDirectory
) -> None:
    url = platform.start_api()
    platform.start_worker(tenant)
    token = create_api_token(directory.get(tenant), "platform-test")
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as api:
        dataset = api.post(
            "/v1/datasets", json={"name": "photos", "displayName": "Photos", "dataType": "IMAGE"}
        ).json()
        image = jpeg()
        ticket = api.post(
            f"/v1/datasets/{dataset['id']}/uploads",
            json={"name": "a.jpg", "size": len(image), "contentType": "image/jpeg"},
        ).json()
        assert httpx.put(ticket["url"], content=image).status_code == 200
        assert api.post(f"/v1/items/{ticket['itemId']}/complete").status_code == 200
        wait_for(
            lambda: api.get(f"/v1/datasets/{dataset['id']}").json()["processedCount"] == 1,
            timeout=60,
            what="the upload processed by the platform's worker",
        )
