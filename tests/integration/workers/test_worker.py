"""The worker process against the real stack: outputs, dead letters, and a SIGKILL mid-batch."""

from __future__ import annotations

import io
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import plyfile
import pulsar
import pytest
import redis
import sqlalchemy as sa
from PIL import Image

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.adapters.tenant_tables import data_items
from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.domain import keyspace
from annostack.domain.pointclouds import read_pcd
from annostack.domain.rendering import bev_metadata
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import (
    DEAD_LETTER_TOPIC,
    WORKER_SUBSCRIPTION,
    DeletionPolicy,
    TenantSpec,
)
from annostack.services.datasets import DatasetCreate, create_dataset
from annostack.services.tenancy import TenantDirectory, create_api_token
from annostack.services.tenants import TenantProvisioner
from annostack.services.uploads import UploadRequest, register_item
from annostack.settings import Settings
from tests.integration.conftest import provision
from tests.integration.workloads import WorkerProcess, jpeg, small_cloud
from tests.media import tone, video
from tests.scans import street_scan
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenant(
    provisioner: TenantProvisioner, directory: TenantDirectory
) -> Iterator[TenantConnection]:
    name = f"wk{uuid.uuid4().hex[:8]}"
    provision(provisioner, name, TenantSpec(display_name=name))
    yield directory.get(name).connection
    provisioner.teardown(name, DeletionPolicy.DELETE)


@pytest.fixture
def worker(tenant: TenantConnection, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(tenant, tmp_path / "worker.log")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def tenant_pulsar(connection: TenantConnection) -> pulsar.Client:
    """A client with the tenant's own token, as its workers have."""
    token = connection.pulsar_token.get_secret_value()
    return pulsar.Client(connection.pulsar_service_url, authentication=client_authentication(token))


def publish(connection: TenantConnection, topic: str, item: int, key: str) -> None:
    client = tenant_pulsar(connection)
    try:
        producer = client.create_producer(f"persistent://{connection.pulsar_namespace}/{topic}")
        producer.send(orjson.dumps({"tenant": connection.tenant, "itemId": item, "key": key}))
    finally:
        client.close()


def next_dead_letter(tenant: TenantConnection) -> pulsar.Message:
    """The next message on the tenant's dead-letter topic (its subscription is pre-created)."""
    client = tenant_pulsar(tenant)
    try:
        dead = client.subscribe(
            f"persistent://{tenant.pulsar_namespace}/{DEAD_LETTER_TOPIC}",
            WORKER_SUBSCRIPTION,
            consumer_type=pulsar.ConsumerType.Shared,
        )
        letter = dead.receive(timeout_millis=30_000)
        dead.acknowledge(letter)
        return letter
    finally:
        client.close()


def test_outputs_dead_letters_and_progress(
    tenant: TenantConnection, worker: WorkerProcess, stack_settings: Settings
) -> None:
    store = ObjectStoreAdmin(stack_settings.s3).client
    image, cloud, broken = 9001, 9002, 9003
    for key, body in [
        (f"data/1/{image}.jpg", jpeg()),
        (f"data/1/{cloud}.pcd", small_cloud(3000, 1)),
        (f"data/1/{broken}.pcd", b"VERSION 0.7\nFIELDS x\nnot a cloud"),
    ]:
        store.put_object(tenant.bucket, key, io.BytesIO(body), len(body))
    publish(tenant, "thumbnails", image, f"data/1/{image}.jpg")
    publish(tenant, "pointclouds", cloud, f"data/1/{cloud}.pcd")
    publish(tenant, "pointclouds", broken, f"data/1/{broken}.pcd")
    worker.start()

    def exists(key: str) -> bool:
        return any(True for _ in store.list_objects(tenant.bucket, prefix=key))

    expected = [f"derived/{image}/thumb-{s}.jpg" for s in (200, 400, 800)] + [
        f"derived/{cloud}/cloud.pcd",
        f"derived/{cloud}/bev.png",
        f"derived/{cloud}/tiles/index.json",
        f"derived/{cloud}/preview.pcd",
    ]
    wait_for(lambda: all(exists(k) for k in expected), timeout=60, what="outputs")
    converted = read_pcd(store.get_object(tenant.bucket, f"derived/{cloud}/cloud.pcd").read())
    assert len(converted) == 3000

    letter = next_dead_letter(tenant)
    assert orjson.loads(letter.data())["itemId"] == broken
    assert letter.properties()["kind"] == "invalid-input"
    assert "not a PCD file" in letter.properties()["reason"]

    counters = redis.Redis.from_url(tenant.redis_url.get_secret_value())
    stats = counters.hgetall(keyspace.key(keyspace.Family.PROCESSING, tenant.tenant))
    assert int(stats[b"processed"]) >= 2 and int(stats[b"failed"]) >= 1
    assert worker.stop() == 0, "SIGTERM is a clean shutdown"


def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    tenant: TenantConnection, worker: WorkerProcess, stack_settings: Settings
) -> None:
    store = ObjectStoreAdmin(stack_settings.s3).client
    items = list(range(9100, 9120))
    for item in items:
        body = small_cloud(800, item)
        store.put_object(tenant.bucket, f"data/2/{item}.pcd", io.BytesIO(body), len(body))
        publish(tenant, "pointclouds", item, f"data/2/{item}.pcd")

    def done() -> int:
        return sum(
            1
            for item in items
            if any(
                True for _ in store.list_objects(tenant.bucket, prefix=f"derived/{item}/bev.png")
            )
        )

    worker.start()
    wait_for(lambda: done() >= 3, timeout=60, what="some progress")
    worker.kill()
    assert done() < len(items), "killed mid-batch"
    worker.start()
    wait_for(lambda: done() == len(items), timeout=120, what="every item processed")
    for item in items:
        versions = list(
            store.list_objects(
                tenant.bucket, prefix=f"derived/{item}/cloud.pcd", include_version=True
            )
        )
        assert len(versions) == 1, f"item {item} written {len(versions)} times"


def register_archive(
    directory: TenantDirectory, settings: Settings, tenant: TenantConnection, data: bytes, name: str
) -> int:
    """An uploaded archive item, as the API's upload completion leaves it."""
    ctx = directory.get(tenant.tenant)
    dataset = create_dataset(
        ctx,
        DatasetCreate(
            name=f"imp-{uuid.uuid4().hex[:6]}", display_name="import", data_type="POINT_CLOUD"
        ),
    )
    item_id, key = register_item(ctx, dataset.id, UploadRequest(name=name, size=len(data)))
    ObjectStoreAdmin(settings.s3).client.put_object(tenant.bucket, key, io.BytesIO(data), len(data))
    publish(tenant, "archives", item_id, key)
    return dataset.id


def xtreme1_zip(frames: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for frame in range(frames):
            archive.writestr(f"scene/lidar_point_cloud_0/{frame:06d}.pcd", small_cloud(500, frame))
            archive.writestr(f"scene/camera_image_0/{frame:06d}.jpg", jpeg())
            archive.writestr(f"scene/camera_config/{frame:06d}.json", b'{"camera": {}}')
    return out.getvalue()


def items_of(directory: TenantDirectory, tenant: TenantConnection, dataset: int) -> dict[str, str]:
    ctx = directory.get(tenant.tenant)
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_items.c.name, data_items.c.status).where(
                data_items.c.dataset_id == dataset
            )
        )
        return {str(name): str(status) for name, status in rows}


def test_an_xtreme1_archive_is_imported_and_its_items_processed(
    tenant: TenantConnection,
    worker: WorkerProcess,
    directory: TenantDirectory,
    stack_settings: Settings,
) -> None:
    export = io.BytesIO(xtreme1_zip(3))
    with zipfile.ZipFile(export, "a") as archive:
        archive.writestr("scene/model.obj", b"v 0 0 0\n")  # kept, with its reason
    dataset = register_archive(directory, stack_settings, tenant, export.getvalue(), "export.zip")
    worker.start()

    def imported() -> bool:
        items = items_of(directory, tenant, dataset)
        return items.get("export.zip") == "imported" and len(items) == 11

    wait_for(imported, timeout=60, what="archive imported")
    items = items_of(directory, tenant, dataset)
    # processing may already have started on the imported items
    assert items["scene/lidar_point_cloud_0/000001.pcd"] in ("uploaded", "processed")
    assert items["scene/camera_config/000002.json"] == "stored", "a sidecar: kept, not queued"
    assert items["scene/model.obj"] == "unsupported", "registered, never dead-lettered"
    ctx = directory.get(tenant.tenant)
    with ctx.engine.connect() as conn:
        ids = dict(
            conn.execute(
                sa.select(data_items.c.name, data_items.c.id).where(
                    data_items.c.dataset_id == dataset
                )
            ).all()
        )
    expected = [
        f"derived/{item}/{'bev.png' if name.endswith('.pcd') else 'thumb-400.jpg'}"
        for name, item in ids.items()
        if name.endswith((".pcd", ".jpg"))
    ]
    assert len(expected) == 6
    store = ObjectStoreAdmin(stack_settings.s3).client
    wait_for(
        lambda: all(any(True for _ in store.list_objects(tenant.bucket, k)) for k in expected),
        timeout=60,
        what="imported images thumbnailed and clouds rendered",
    )


def test_a_malicious_archive_is_refused_without_writing_anything(
    tenant: TenantConnection,
    worker: WorkerProcess,
    directory: TenantDirectory,
    stack_settings: Settings,
) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name in ("ok/000001.pcd", "../../escape.pcd"):
            body = small_cloud(10, 1)
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    dataset = register_archive(directory, stack_settings, tenant, out.getvalue(), "evil.tgz")
    worker.start()
    letter = next_dead_letter(tenant)
    assert "'..'" in letter.properties()["reason"]
    assert items_of(directory, tenant, dataset) == {"evil.tgz": "uploading"}, "nothing registered"


def test_an_item_uploaded_through_the_api_is_processed(
    tenant: TenantConnection,
    worker: WorkerProcess,
    directory: TenantDirectory,
    stack_settings: Settings,
) -> None:
    token = create_api_token(directory.get(tenant.tenant), "upload-test")
    auth = {"Authorization": f"Bearer {token}"}
    photo = jpeg()
    worker.start()
    with serve(create_app(stack_settings)) as api:
        dataset = api.post(
            "/v1/datasets",
            json={"name": f"up-{uuid.uuid4().hex[:6]}", "displayName": "x", "dataType": "IMAGE"},
            headers=auth,
        ).json()["id"]
        ticket = api.post(
            f"/v1/datasets/{dataset}/uploads",
            json={"name": "front.jpg", "size": len(photo), "contentType": "image/jpeg"},
            headers=auth,
        ).json()
        assert httpx.put(ticket["url"], content=photo).status_code == 200
        assert api.post(f"/v1/items/{ticket['itemId']}/complete", headers=auth).status_code == 200
    store = ObjectStoreAdmin(stack_settings.s3).client
    key = f"derived/{ticket['itemId']}/thumb-200.jpg"
    wait_for(lambda: any(True for _ in store.list_objects(tenant.bucket, key)), what="thumbnail")


def ply_scan() -> bytes:
    cloud = street_scan(beams=16, azimuths=512)
    vertices = np.empty(len(cloud), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    for axis in "xyz":
        vertices[axis] = cloud.points[axis]
    out = io.BytesIO()
    element = plyfile.PlyElement.describe(vertices, "vertex")
    plyfile.PlyData([element], byte_order=">").write(out)  # binary, big-endian
    return out.getvalue()


def upright_tiff() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    out = io.BytesIO()
    Image.new("RGB", (640, 360), (200, 30, 30)).save(out, "TIFF", exif=exif.tobytes())
    return out.getvalue()


KINDS = {
    # dataType, file name, body, outputs expected under derived/<item>/
    "video": ("VIDEO", "clip.mp4", video(seconds=2.0), ["info.json", "poster.jpg", "frames/7.jpg"]),
    "audio": ("AUDIO", "tone.wav", tone(seconds=1.0), ["info.json", "waveform.png"]),
    "text": ("TEXT", "notes.txt", "Grüße\nzweite Zeile\n".encode(), ["info.json"]),
    "ply": ("POINT_CLOUD", "scan.ply", ply_scan(), ["cloud.pcd", "bev.png"]),
    "tiff": ("IMAGE", "photo.tif", upright_tiff(), ["thumb-200.jpg", "thumb-800.jpg"]),
}


def test_every_kind_uploaded_through_the_api_is_processed_or_kept_with_its_reason(
    tenant: TenantConnection,
    worker: WorkerProcess,
    directory: TenantDirectory,
    stack_settings: Settings,
    api_settings: Settings,
) -> None:
    token = create_api_token(directory.get(tenant.tenant), "kinds-test")
    auth = {"Authorization": f"Bearer {token}"}
    store = ObjectStoreAdmin(stack_settings.s3).client
    worker.start()
    # As the API's own Pulsar role and Redis user: the `media` topic is theirs to publish on.
    with serve(create_app(api_settings)) as api:

        def upload(data_type: str, name: str, body: bytes) -> int:
            dataset = api.post(
                "/v1/datasets",
                json={"name": f"k-{uuid.uuid4().hex[:6]}", "displayName": name,
                      "dataType": data_type},
                headers=auth,
            ).json()["id"]  # fmt: skip
            ticket = api.post(
                f"/v1/datasets/{dataset}/uploads", json={"name": name, "size": len(body)},
                headers=auth,
            ).json()  # fmt: skip
            assert httpx.put(ticket["url"], content=body).status_code == 200
            done = api.post(f"/v1/items/{ticket['itemId']}/complete", headers=auth)
            assert done.status_code == 200, done.text
            return int(ticket["itemId"])

        items = {kind: upload(t, name, body) for kind, (t, name, body, _) in KINDS.items()}
        unsupported = upload("POINT_CLOUD", "mesh.obj", b"v 0 0 0\nv 1 0 0\nf 1 2 1\n")

        def item(item_id: int) -> dict[str, Any]:
            body: dict[str, Any] = api.get(f"/v1/items/{item_id}", headers=auth).json()
            return body

        kept = item(unsupported)
        assert (kept["kind"], kept["status"]) == ("unsupported", "unsupported")
        assert kept["statusReason"].startswith(".obj files are not processed; supported:")
        wait_for(
            lambda: all(item(i)["status"] == "processed" for i in items.values()),
            timeout=90,
            what="every kind processed",
        )
        assert {kind: item(i)["kind"] for kind, i in items.items()} == {
            "video": "video", "audio": "audio", "text": "text", "ply": "pointcloud",
            "tiff": "image",
        }  # fmt: skip
    for kind, (_, _, _, outputs) in KINDS.items():
        for name in outputs:
            key = f"derived/{items[kind]}/{name}"
            assert any(True for _ in store.list_objects(tenant.bucket, key)), key

    def fetch(kind: str, name: str) -> bytes:
        response = store.get_object(tenant.bucket, f"derived/{items[kind]}/{name}")
        return bytes(response.read())

    assert orjson.loads(fetch("video", "info.json"))["durationSeconds"] == 2.0
    assert orjson.loads(fetch("audio", "info.json"))["sampleRate"] == 16_000
    assert orjson.loads(fetch("text", "info.json"))["encoding"] == "utf-8"
    bev = bev_metadata(fetch("ply", "bev.png"))
    scan = street_scan(beams=16, azimuths=512).points
    in_range = int(((np.abs(scan["x"]) < 50) & (np.abs(scan["y"]) < 50)).sum())
    assert (bev.centred_on, bev.range_metres, bev.points_drawn) == ("sensor", 50.0, in_range)
    with Image.open(io.BytesIO(fetch("tiff", "thumb-200.jpg"))) as thumb:
        assert thumb.size == (112, 200), "TIFF thumbnails are upright (EXIF orientation)"
    assert not any(True for _ in store.list_objects(tenant.bucket, f"derived/{unsupported}/"))
