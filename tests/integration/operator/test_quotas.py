"""The plan's quotas are enforced, with a reason, and nothing half-written."""

from __future__ import annotations

import io
import itertools
import os
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from minio import Minio

from annostack.adapters.bucket_quota import SeaweedShellQuotas
from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.objects import CAPACITY_KEY
from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import TenantNames
from annostack.services.tenancy import TenantDirectory, create_api_token
from annostack.settings import Settings
from tests.integration.operator.conftest import Tenants
from tests.integration.operator.test_processing import Resources
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def api(api_settings: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(api_settings)) as client:
        yield client


def token_for(directory: TenantDirectory, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(directory.get(tenant), 'quota-test')}"}


def new_dataset(api: httpx.Client, auth: dict[str, str]) -> httpx.Response:
    body = {"name": f"ds-{uuid.uuid4().hex[:8]}", "displayName": "d", "dataType": "IMAGE"}
    return api.post("/v1/datasets", json=body, headers=auth)


def test_max_datasets_plus_one_is_refused_by_the_api_and_the_controller(
    tenants: Tenants, admin_kube: Kube, directory: TenantDirectory, api: httpx.Client
) -> None:
    name = tenants.create({"displayName": "Small", "plan": {"maxDatasets": 2}})
    tenants.wait_ready(name)
    auth = token_for(directory, name)
    assert [new_dataset(api, auth).status_code for _ in range(2)] == [201, 201]
    refused = new_dataset(api, auth)
    assert refused.status_code == 403
    assert "plan.maxDatasets=2" in refused.json()["detail"]
    assert len(api.get("/v1/datasets", headers=auth).json()["items"]) == 2, "nothing added"

    resources = Resources(admin_kube, TenantNames(tenant=name).namespace)
    resources.create("datasets", "third", {"displayName": "Third", "dataType": "IMAGE"})
    wait_for(
        lambda: any(
            c["reason"] == "DatasetLimitReached" and "plan.maxDatasets=2" in c["message"]
            for c in resources.status("datasets", "third").get("conditions", [])
        ),
        timeout=30,
        what="the Dataset refused with the reason",
    )
    assert len(api.get("/v1/datasets", headers=auth).json()["items"]) == 2


def test_a_bucket_at_its_quota_refuses_the_next_upload(
    tenants: Tenants,
    admin_kube: Kube,
    directory: TenantDirectory,
    api: httpx.Client,
    stack_settings: Settings,
) -> None:
    name = tenants.create({"displayName": "Tiny", "plan": {"storage": "1Mi"}})
    tenants.wait_ready(name)
    names = TenantNames(tenant=name)
    s3 = stack_settings.s3
    assert s3.seaweedfs_master and s3.seaweedfs_filer
    quotas = SeaweedShellQuotas(s3.weed_binary, s3.seaweedfs_master, s3.seaweedfs_filer)
    assert not quotas.ensure(names.bucket, 2**20), "the store holds the plan's quota already"

    auth = token_for(directory, name)
    dataset = new_dataset(api, auth).json()["id"]
    first = os.urandom(900 * 1024)
    ticket = api.post(
        f"/v1/datasets/{dataset}/uploads", json={"name": "a.jpg", "size": len(first)}, headers=auth
    )
    assert ticket.status_code == 201, ticket.text
    assert httpx.put(ticket.json()["url"], content=first).status_code == 200
    item = ticket.json()["itemId"]
    assert api.post(f"/v1/items/{item}/complete", headers=auth).status_code == 200

    # The store counts a write in its usage within a heartbeat of its volume server.
    capacity = ObjectStoreAdmin(s3).client.presigned_get_object(names.bucket, CAPACITY_KEY)

    def used() -> int:
        found = re.search(rb"<Used>(\d+)</Used>", httpx.get(capacity).content)
        return int(found.group(1)) if found else -1

    wait_for(lambda: used() >= len(first), timeout=30, what="the first upload counted")
    answer = api.post(
        f"/v1/datasets/{dataset}/uploads", json={"name": "b.jpg", "size": 200 * 1024},
        headers=auth,
    )  # fmt: skip
    assert answer.status_code == 403, answer.text
    assert "plan.storage" in answer.json()["detail"] and "1Mi" in answer.json()["detail"]
    items = api.get(f"/v1/datasets/{dataset}", headers=auth).json()
    assert items["itemCount"] == 1, "the refused upload left no item behind"

    # The store enforces the quota too, whoever writes: the tenant's workers (here with the
    # Secret's key) take the bucket over its quota, SeaweedFS makes it read-only within about a
    # minute, and a save through the API then gets the same reason.
    secret = TenantConnection.from_env(admin_kube.secret_data(names.namespace, names.secret) or {})
    worker_s3 = Minio(
        secret.s3_endpoint.removeprefix("http://"),
        secret.s3_access_key.get_secret_value(),
        secret.s3_secret_key.get_secret_value(),
        secure=False,
        region=secret.s3_region,
    )
    outputs = os.urandom(600 * 1024)
    worker_s3.put_object(names.bucket, "derived/1/big.bin", io.BytesIO(outputs), len(outputs))
    saves = itertools.count()

    def save_refused() -> bool:
        response = api.put(
            f"/v1/items/{item}/annotations/s{next(saves)}",
            json={"objects": []},
            headers={**auth, "If-None-Match": "*"},
        )
        assert response.status_code in (200, 403), response.text
        return response.status_code == 403 and "plan.storage" in response.json()["detail"]

    wait_for(save_refused, timeout=150, what="the read-only bucket's refusal explained")
