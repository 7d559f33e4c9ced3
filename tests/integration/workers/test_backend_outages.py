"""The worker and the API through backend outages: Redis, then the tenant database, then S3
stopped for a while during a batch. The worker stays up, every message ends processed exactly
once (statuses, outputs), the API answers 503 with Retry-After while the database is away,
and both recover by themselves."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.tenant_tables import data_items
from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.devstack import processes
from annostack.devstack.stack import Stack
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.datasets import DatasetCreate, create_dataset
from annostack.services.tenancy import TenantDirectory, create_api_token
from annostack.services.tenants import TenantProvisioner
from annostack.services.uploads import UploadRequest, register_item
from annostack.settings import Settings
from tests.integration.conftest import provision
from tests.integration.workers.test_worker import publish
from tests.integration.workloads import WorkerProcess, small_cloud
from tests.support import wait_for

pytestmark = pytest.mark.integration

MESSAGES = 60
OUTAGE_SECONDS = 12.0  # the outage itself is what is under test: it has to last


@pytest.fixture(scope="module")
def tenant(
    provisioner: TenantProvisioner, directory: TenantDirectory
) -> Iterator[TenantConnection]:
    name = f"ob{uuid.uuid4().hex[:8]}"
    provision(provisioner, name, TenantSpec(display_name=name))
    yield directory.get(name).connection
    provisioner.teardown(name, DeletionPolicy.DELETE)


def metric(worker: WorkerProcess, result: str) -> float:
    port = worker.env["ANNOSTACK_WORKER_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    line = f'annostack_worker_messages_total{{result="{result}"}}'
    return sum(float(row.split()[-1]) for row in text.splitlines() if row.startswith(line))


def test_the_worker_and_the_api_ride_out_redis_database_and_s3_outages(
    tenant: TenantConnection,
    directory: TenantDirectory,
    local_stack: Stack,
    stack_settings: Settings,
    tmp_path: Path,
) -> None:
    ctx = directory.get(tenant.tenant)
    name = f"o-{uuid.uuid4().hex[:6]}"
    dataset = create_dataset(
        ctx, DatasetCreate(name=name, display_name="o", data_type="POINT_CLOUD")
    )
    store = ObjectStoreAdmin(stack_settings.s3).client
    items = []
    for n in range(MESSAGES):
        body = small_cloud(2000, n)
        item, key = register_item(ctx, dataset.id, UploadRequest(name=f"{n}.pcd", size=len(body)))
        store.put_object(tenant.bucket, key, io.BytesIO(body), len(body))
        with ctx.engine.begin() as conn:
            conn.execute(
                data_items.update().where(data_items.c.id == item).values(status="uploaded")
            )
        items.append((item, key))
    token = create_api_token(ctx, "outage-test")
    worker = WorkerProcess(tenant, tmp_path / "worker.log")
    worker.env["ANNOSTACK_WORKER_BACKEND_PAUSE_MS"] = "200"
    worker.start()

    def statuses() -> dict[str, int]:
        with ctx.engine.connect() as conn:
            rows = conn.execute(
                sa.select(data_items.c.status, sa.func.count())
                .where(data_items.c.dataset_id == dataset.id)
                .group_by(data_items.c.status)
            )
            return {str(status): int(count) for status, count in rows}

    for item, key in items:
        publish(tenant, "pointclouds", item, key)
    database = local_stack.settings.database  # the component's name: mariadb or tidb
    try:
        for component in ("redis", database, "seaweedfs"):
            before = statuses().get("processed", 0)
            pid = local_stack.settings.state_dir / f"{component}.pid"
            processes.stop(pid)
            started = time.monotonic()
            if component == database:
                with serve(create_app(stack_settings)) as api:
                    auth = {"Authorization": f"Bearer {token}"}
                    answer = api.get(f"/v1/datasets/{dataset.id}", headers=auth)
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] and "TiDB" in answer.json()["detail"]
            while time.monotonic() - started < OUTAGE_SECONDS:
                assert worker.proc is not None and worker.proc.poll() is None, "worker died"
                time.sleep(1)
            local_stack.up()
            if component != database:
                assert statuses().get("processed", 0) < MESSAGES, f"{component}: batch over"
            wait_for(
                lambda before=before: statuses().get("processed", 0) > before,  # type: ignore[misc]
                timeout=120,
                what=f"progress after {component} came back",
            )
        wait_for(lambda: statuses() == {"processed": MESSAGES}, timeout=180, what="all done")
        with serve(create_app(stack_settings)) as api:
            auth = {"Authorization": f"Bearer {token}"}
            assert api.get(f"/v1/datasets/{dataset.id}", headers=auth).status_code == 200
        assert metric(worker, "retried") > 0, "the outages were felt"
        assert metric(worker, "dead-lettered") == 0, "an outage is never the message's fault"
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        local_stack.up()
        if worker.proc is not None and worker.proc.poll() is None:
            worker.stop()
    for item, _ in items:
        versions = list(
            store.list_objects(
                tenant.bucket, prefix=f"derived/{item}/cloud.pcd", include_version=True
            )
        )
        assert len(versions) == 1, f"item {item} written {len(versions)} times"
