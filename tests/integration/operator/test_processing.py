"""Datasets and ProcessingJobs on the real stack: operator, workers, database, S3, Pulsar, Redis."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import sqlalchemy as sa
from kubernetes import client

from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.push import channel_for
from annostack.adapters.tenant_tables import data_items
from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.devstack.host_operator import OperatorProcess
from annostack.domain.push import Destination
from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
from annostack.services.datasets import DatasetCreate, create_dataset
from annostack.services.tenancy import TenantContext, TenantDirectory, create_api_token
from annostack.services.uploads import UploadRequest, count_by_status, register_item
from annostack.settings import Settings
from tests.integration.conftest import ROOT, load_documents, pulsar_admin
from tests.integration.operator.conftest import Tenants
from tests.integration.workloads import WorkerProcess, jpeg, small_cloud
from tests.support import wait_for

pytestmark = pytest.mark.integration


class Resources:
    """Datasets and ProcessingJobs in one tenant's namespace, as kubectl would handle them."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube.api)
        self.namespace = namespace

    def create(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        kind = {"datasets": "Dataset", "processingjobs": "ProcessingJob"}[plural]
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        self.api.create_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, plural, body
        )

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.api.get_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, plural, name
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict((self.get(plural, name) or {}).get("status") or {})

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, plural, name, {"spec": spec}
        )

    def wait_phase(self, plural: str, name: str, phases: set[str], timeout: float = 90) -> Any:
        wait_for(
            lambda: self.status(plural, name).get("phase") in phases,
            timeout=timeout,
            what=f"{plural}/{name} in {sorted(phases)}",
        )
        return self.status(plural, name)


@pytest.fixture
def tenant(tenants: Tenants) -> str:
    name = tenants.create({"displayName": "Processing"})
    tenants.wait_ready(name)
    return name


@pytest.fixture
def resources(admin_kube: Kube, tenant: str) -> Resources:
    return Resources(admin_kube, TenantNames(tenant=tenant).namespace)


@pytest.fixture
def worker(directory: TenantDirectory, tenant: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(directory.get(tenant).connection, tmp_path / "worker.log")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def add_items(ctx: TenantContext, store: Any, dataset_id: int, files: dict[str, bytes]) -> None:
    """Items as a finished upload leaves them: registered, stored, marked uploaded."""
    for name, data in files.items():
        item_id, key = register_item(ctx, dataset_id, UploadRequest(name=name, size=len(data)))
        store.put_object(ctx.connection.bucket, key, io.BytesIO(data), len(data))
        with ctx.engine.begin() as conn:
            conn.execute(
                data_items.update().where(data_items.c.id == item_id).values(status="uploaded")
            )


def dataset_id_of(resources: Resources, name: str) -> int:
    wait_for(
        lambda: resources.status("datasets", name).get("datasetId") is not None,
        timeout=30,
        what=f"Dataset {name} has its row",
    )
    return int(resources.status("datasets", name)["datasetId"])


def test_a_job_counts_exactly_across_an_operator_restart_mid_fan_out(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    operator: OperatorProcess,
    worker: WorkerProcess,
) -> None:
    resources.create("datasets", "photos", {"displayName": "Photos", "dataType": "IMAGE"})
    dataset_id = dataset_id_of(resources, "photos")
    ctx = directory.get(tenant)
    store = ObjectStoreAdmin(stack_settings.s3).client
    image = jpeg()
    files = {f"cam/{n:03d}.jpg": image for n in range(100)}
    files |= {"cam/broken-1.jpg": b"not a jpeg", "cam/broken-2.jpg": b"\xff\xd8 truncated"}
    add_items(ctx, store, dataset_id, files)

    pushed = redis.Redis.from_url(stack_settings.redis.url.get_secret_value()).pubsub()
    pushed.subscribe(channel_for(str(Destination.everyone(tenant))))
    spec = {"dataset": "photos", "operations": ["thumbnail"]}
    resources.create("processingjobs", "thumbs", spec)
    wait_for(
        lambda: resources.status("processingjobs", "thumbs").get("published", 0) >= 20,
        timeout=60,
        what="fan-out under way",
    )
    operator.kill()  # mid fan-out: the batch being published may go out twice
    killed_at = resources.status("processingjobs", "thumbs")
    assert not killed_at.get("fannedOut"), f"fan-out already over: {killed_at}"
    operator.start()
    worker.start()

    final = resources.wait_phase("processingjobs", "thumbs", {"Complete", "Failed"}, timeout=120)
    assert (final["total"], final["succeeded"], final["failed"]) == (102, 100, 2)
    assert final["phase"] == "Failed"
    failed = next(c for c in final["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ItemsFailed" and "dead-letter" in failed["message"]
    assert final["startTime"] <= final["completionTime"]
    assert count_by_status(ctx, dataset_id) == {"processed": 100, "failed": 2}
    wait_for(
        lambda: resources.status("datasets", "photos").get("processed") == 100,
        timeout=30,
        what="the Dataset's counts follow",
    )
    assert resources.status("datasets", "photos")["items"] == 102
    gauge = f'annostack_tenant_dead_letter_messages{{tenant="{tenant}"}} 2.0'
    wait_for(lambda: gauge in operator.metrics(), timeout=30, what="dead letters exported")
    job_events = [
        event
        for message in iter(lambda: pushed.get_message(timeout=0.5), None)
        if message["type"] == "message"
        and (event := orjson.loads(message["data"]))["type"] == "job.progress"
    ]
    assert job_events, "browsers are told how the job progresses"
    assert (job_events[-1]["phase"], job_events[-1]["succeeded"]) == ("Failed", 100)
    pushed.close()


def test_cancelling_stops_the_fan_out_and_skips_what_is_queued_then_the_ttl_deletes_it(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    resources.create("datasets", "many", {"displayName": "Many", "dataType": "IMAGE"})
    dataset_id = dataset_id_of(resources, "many")
    ctx = directory.get(tenant)
    store = ObjectStoreAdmin(stack_settings.s3).client
    image = jpeg()
    add_items(ctx, store, dataset_id, {f"{n:03d}.jpg": image for n in range(150)})

    spec = {"dataset": "many", "operations": ["thumbnail"], "ttlSecondsAfterFinished": 4}
    resources.create("processingjobs", "stopme", spec)
    wait_for(
        lambda: resources.status("processingjobs", "stopme").get("published", 0) >= 10,
        timeout=60,
        what="fan-out under way",
    )
    resources.patch_spec("processingjobs", "stopme", {"cancelled": True})
    final = resources.wait_phase("processingjobs", "stopme", {"Cancelled"}, timeout=30)
    assert final["published"] < 150, "the fan-out stopped"
    assert next(c for c in final["conditions"] if c["type"] == "Failed")["reason"] == "Cancelled"

    worker.start()  # what was queued before the cancellation is skipped, not processed
    backlog_path = f"/persistent/{TenantNames(tenant=tenant).pulsar_namespace}/thumbnails/stats"
    with pulsar_admin(stack_settings) as admin:
        wait_for(
            lambda: admin.get(backlog_path).json()["subscriptions"]["workers"]["msgBacklog"] == 0,
            timeout=60,
            what="queued messages drained",
        )
    assert count_by_status(ctx, dataset_id) == {"uploaded": 150}
    wait_for(
        lambda: resources.get("processingjobs", "stopme") is None,
        timeout=30,
        what="the finished job deleted after its TTL",
    )


def test_the_documented_dataset_imports_its_s3_prefix_and_the_documented_job_reprocesses(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    (dataset,) = load_documents(ROOT / "examples" / "dataset.yaml")
    (rerun,) = load_documents(ROOT / "examples" / "processingjob.yaml")
    ctx = directory.get(tenant)
    store = ObjectStoreAdmin(stack_settings.s3).client
    files = {
        "raw/drive-01/lidar/000.pcd": small_cloud(800, 1),
        "raw/drive-01/lidar/001.pcd": small_cloud(800, 2),
        "raw/drive-01/camera/000.jpg": jpeg(),
        "raw/drive-01/calib.json": b"{}",
        "raw/drive-02/lidar/000.pcd": small_cloud(800, 3),
    }
    for key, data in files.items():
        store.put_object(ctx.connection.bucket, key, io.BytesIO(data), len(data))
    worker.start()
    name = dataset["metadata"]["name"]
    resources.create("datasets", name, dataset["spec"])

    status = resources.wait_phase("datasets", name, {"Ready", "Failed"}, timeout=120)
    assert status["phase"] == "Ready"
    wait_for(
        lambda: resources.status("datasets", name).get("processed") == 3,
        timeout=30,
        what="all imported items processed",
    )
    status = resources.status("datasets", name)
    assert status["items"] == 3, "the two clouds and the image; not the JSON, not drive-02"
    job = resources.status("processingjobs", status["importJob"])
    assert (job["phase"], job["total"], job["succeeded"]) == ("Complete", 3, 3)
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_items.c.id, data_items.c.object_key).where(
                data_items.c.dataset_id == status["datasetId"]
            )
        ).all()
    keys = {str(row.object_key): int(row.id) for row in rows}
    assert set(keys) == {k for k in files if k.startswith("raw/drive-01/") and "json" not in k}
    bev = f"derived/{keys['raw/drive-01/lidar/000.pcd']}/bev.png"
    assert store.stat_object(ctx.connection.bucket, bev).size > 0

    resources.create("processingjobs", rerun["metadata"]["name"], rerun["spec"])
    final = resources.wait_phase("processingjobs", rerun["metadata"]["name"], {"Complete"})
    assert (final["total"], final["succeeded"]) == (2, 2), "only the clouds under lidar/"


def test_an_archive_uploaded_through_the_api_is_imported_by_a_processing_job(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    api_settings: Settings,
    worker: WorkerProcess,
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for frame in range(3):
            bundle.writestr(f"scene/lidar_point_cloud_0/{frame:06d}.pcd", small_cloud(500, frame))
            bundle.writestr(f"scene/camera_image_0/{frame:06d}.jpg", jpeg())
        bundle.writestr("scene/model.obj", b"v 0 0 0\n")  # kept, skipped by the job
    data = archive.getvalue()
    ctx = directory.get(tenant)
    dataset = create_dataset(
        ctx, DatasetCreate(name="scenes", display_name="Scenes", data_type="POINT_CLOUD")
    )
    token = create_api_token(ctx, f"test-{uuid.uuid4().hex[:6]}")
    worker.start()
    with serve(create_app(api_settings)) as api:  # as the API's ServiceAccount
        auth = {"Authorization": f"Bearer {token}"}
        ticket = api.post(
            f"/v1/datasets/{dataset.id}/uploads",
            json={"name": "export.zip", "size": len(data), "contentType": "application/zip"},
            headers=auth,
        )
        assert ticket.status_code in (200, 201), ticket.text
        body = ticket.json()
        assert httpx.put(body["url"], content=data).status_code == 200
        done = api.post(f"/v1/items/{body['itemId']}/complete", headers=auth)
        assert done.status_code == 200, done.text

    job_name = f"import-{body['itemId']}"
    job = resources.get("processingjobs", job_name)
    assert job is not None, "the API created a ProcessingJob for the archive"
    assert job["spec"]["archiveItemId"] == body["itemId"]
    final = resources.wait_phase("processingjobs", job_name, {"Complete", "Failed"}, timeout=120)
    assert (final["phase"], final["total"], final["succeeded"]) == ("Complete", 6, 6)
    assert final["skipped"] == 1
    complete = next(c for c in final["conditions"] if c["type"] == "Complete")
    assert complete["message"] == "6 items processed; 1 skipped: 1 unsupported (scene/model.obj)"
    assert count_by_status(ctx, dataset.id) == {"imported": 1, "processed": 6, "unsupported": 1}

    nothing = io.BytesIO()
    with zipfile.ZipFile(nothing, "w") as bundle:
        bundle.writestr("notes/readme.docx", b"PK not really")
        bundle.writestr("camera_config/0.json", b"{}")
    with serve(create_app(api_settings)) as api:
        item = upload(api, auth, dataset.id, "nothing.zip", nothing.getvalue())
    final = resources.wait_phase("processingjobs", f"import-{item}", {"Complete", "Failed"})
    assert (final["phase"], final["total"], final["skipped"]) == ("Failed", 0, 2)
    failed = next(c for c in final["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "NothingToProcess", "not 'Complete, AllSucceeded, 0 items'"
    assert (
        "1 sidecar (camera_config/0.json); 1 unsupported (notes/readme.docx)" in (failed["message"])
    )


def upload(api: httpx.Client, auth: dict[str, str], dataset: int, name: str, data: bytes) -> int:
    ticket = api.post(
        f"/v1/datasets/{dataset}/uploads", json={"name": name, "size": len(data)}, headers=auth
    ).json()
    assert httpx.put(ticket["url"], content=data).status_code == 200
    assert api.post(f"/v1/items/{ticket['itemId']}/complete", headers=auth).status_code == 200
    return int(ticket["itemId"])


def test_a_dataset_imports_an_archive_source_and_refuses_a_missing_one(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    ctx = directory.get(tenant)
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for frame in range(2):
            archive.writestr(f"scene/lidar_point_cloud_0/{frame:06d}.pcd", small_cloud(500, frame))
    data = bundle.getvalue()
    store = ObjectStoreAdmin(stack_settings.s3).client
    store.put_object(ctx.connection.bucket, "raw/export.zip", io.BytesIO(data), len(data))
    worker.start()

    spec = {
        "displayName": "Export",
        "dataType": "POINT_CLOUD",
        "source": {"archive": "raw/export.zip"},
    }
    resources.create("datasets", "export", spec)
    status = resources.wait_phase("datasets", "export", {"Ready", "Failed"}, timeout=120)
    assert status["phase"] == "Ready"
    job = resources.status("processingjobs", status["importJob"])
    assert (job["phase"], job["total"], job["succeeded"]) == ("Complete", 2, 2)
    assert count_by_status(ctx, status["datasetId"]) == {"imported": 1, "processed": 2}

    missing = {**spec, "source": {"archive": "raw/never-uploaded.zip"}}
    resources.create("datasets", "missing", missing)
    failed = resources.wait_phase("datasets", "missing", {"Ready", "Failed"}, timeout=60)
    assert failed["phase"] == "Failed"
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSource" and "raw/never-uploaded.zip" in ready["message"]
    assert "importJob" not in failed, "nothing is started for a source that is not there"


def test_a_dataset_of_another_data_type_under_the_same_name_is_refused(
    tenant: str, resources: Resources, directory: TenantDirectory
) -> None:
    ctx = directory.get(tenant)
    create_dataset(ctx, DatasetCreate(name="shared", display_name="REST", data_type="IMAGE"))
    resources.create("datasets", "shared", {"displayName": "GitOps", "dataType": "POINT_CLOUD"})
    failed = resources.wait_phase("datasets", "shared", {"Ready", "Failed"}, timeout=60)
    assert failed["phase"] == "Failed"
    stalled = next(c for c in failed["conditions"] if c["type"] == "Stalled")
    assert "already exists with data type IMAGE" in stalled["message"]


def test_a_job_applied_before_its_dataset_waits_for_it(
    tenant: str,
    resources: Resources,
    directory: TenantDirectory,
    stack_settings: Settings,
    worker: WorkerProcess,
) -> None:
    resources.create("processingjobs", "early", {"dataset": "later", "operations": ["thumbnail"]})
    wait_for(
        lambda: resources.status("processingjobs", "early").get("phase") == "Pending",
        timeout=30,
        what="the job waits",
    )
    waiting = resources.status("processingjobs", "early")["conditions"]
    assert next(c for c in waiting if c["type"] == "Reconciling")["reason"] == "WaitingForDataset"

    resources.create("datasets", "later", {"displayName": "Later", "dataType": "IMAGE"})
    dataset_id = dataset_id_of(resources, "later")
    ctx = directory.get(tenant)
    add_items(ctx, ObjectStoreAdmin(stack_settings.s3).client, dataset_id, {"a.jpg": jpeg()})
    worker.start()
    final = resources.wait_phase("processingjobs", "early", {"Complete", "Failed"}, timeout=60)
    assert (final["phase"], final["succeeded"]) == ("Complete", 1)
