"""Exports on the real stack: asked for through the API, written by a real worker into the
tenant's bucket, followed and downloaded through `GET /v1/exports/{id}`.

The platform's in-cluster operator (deployed for the module) starts, fans out and folds each
job; a worker of the tenant's on the host writes the archive.

* Xtreme1: an archive imported by the worker, exported again: every frame's objects come back
  byte for byte (serialised the same way), unknown object types included.
* KITTI: a KITTI prefix with a hand-picked calibration and one saved 3D box per frame: the
  label file equals a line worked out by hand (tests/unit/test_exports.py shows the working).
* COCO: 2D boxes of an image dataset; a 3D box on an image is listed in the report. The image
  the worker processed has its size; one never processed has null, and is listed.
* nuScenes: the imported Xtreme1 sequence as devkit tables, its track linked through the
  three frames, the point segments reported; the same bytes when exported again.
* Another tenant cannot see the export.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import httpx
import orjson
import pytest

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.devstack.platform import Platform
from annostack.devstack.stack import Stack
from annostack.domain.processing import ImportSource
from annostack.services.dataset_imports import import_source
from annostack.services.uploads import UploadRequest, register_item
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.workers.test_worker import publish
from tests.integration.workloads import WorkerProcess, jpeg, small_cloud
from tests.support import wait_for

pytestmark = pytest.mark.integration

STEMS = ["1", "2", "10"]
KITTI_CALIB = (
    "P0: 700 0 600 0 0 700 180 0 0 0 1 0\nP1: 700 0 600 0 0 700 180 0 0 0 1 0\n"
    "P2: 700 0 600 0 0 700 180 0 0 0 1 0\nP3: 700 0 600 0 0 700 180 0 0 0 1 0\n"
    "R0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
)
BOX = {"center": [10, 2, -0.75], "size": [4, 2, 1.5], "rotation": [0, 0, 0]}
CAR = {"id": "c1", "type": "3D_BOX", "classId": "car", "contour": BOX}
# Hand-checked (tests/unit/test_exports.py): with P2 = [K|0] and the ideal Velodyne rotation.
CAR_LINE = "Car 0.00 0 -1.37 337.50 180.00 541.67 311.25 1.50 2.00 4.00 -2.00 1.50 10.00 -1.57\n"


def result(stem: str) -> dict[str, Any]:
    """An Xtreme1 result as its pc-tool writes one, with an object annostack cannot hold."""
    return {
        "version": "Xtreme1 V0.6", "dataId": int(stem), "sourceName": "Ground Truth",
        "objects": [
            {"id": f"car-{stem}", "type": "3D_BOX", "classId": 7, "className": "Car",
             "trackId": "t1", "trackName": "1", "classValues": [{"id": "occluded", "value": "no"}],
             "contour": {"pointN": 42, "points": [], "size3D": {"x": 4, "y": 2, "z": 1.5},
                         "center3D": {"x": 5, "y": 1, "z": 0.5}, "viewIndex": 0,
                         "rotation3D": {"x": 0, "y": 0, "z": 0.3}},
             "modelConfidence": None, "modelClass": ""},
            {"id": f"seg-{stem}", "type": "3D_SEGMENT_POINTS", "classId": 8,
             "contour": {"indexs": [1, 2, 3]}},
        ],
    }  # fmt: skip


def xtreme1_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for number, stem in enumerate(STEMS):
            archive.writestr(f"scene_1/lidar_point_cloud_0/{stem}.pcd", small_cloud(300, number))
            archive.writestr(f"scene_1/result/{stem}.json", orjson.dumps(result(stem)))
    return out.getvalue()


def new_dataset(api: httpx.Client, owner: ApiTenant, data_type: str) -> int:
    body = {"name": f"ex-{uuid.uuid4().hex[:8]}", "displayName": "Export", "dataType": data_type}
    response = api.post("/v1/datasets", json=body, headers=owner.auth)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def put_object(settings: Settings, owner: ApiTenant, key: str, body: bytes) -> None:
    store = ObjectStoreAdmin(settings.s3).client
    store.put_object(owner.context.connection.bucket, key, io.BytesIO(body), len(body))


def save(api: httpx.Client, owner: ApiTenant, item: int, source: str, objects: list[Any]) -> None:
    response = api.put(
        f"/v1/items/{item}/annotations/{source}",
        content=orjson.dumps({"objects": objects}),
        headers={**owner.auth, "If-None-Match": "*", "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def platform(local_stack: Stack, pytestconfig: pytest.Config) -> Platform:
    """The in-cluster operator runs the jobs the API asks for, as in production."""
    platform = Platform(local_stack)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # a build, if the tree changed
        platform.deploy(platform.load_images())
    return platform


def export(
    api: httpx.Client, owner: ApiTenant, dataset: int, body: dict[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """Ask for an export, follow it until it ends, and download it: (its API view, its bytes)."""
    accepted = api.post(f"/v1/datasets/{dataset}/exports", json=body, headers=owner.auth)
    assert accepted.status_code == 202, accepted.text
    name = accepted.json()["id"]
    assert accepted.json()["statusUrl"] == f"/v1/exports/{name}"
    views: list[dict[str, Any]] = []

    def ended() -> bool:
        shown = api.get(f"/v1/exports/{name}", headers=owner.auth)
        assert shown.status_code == 200, shown.text
        views.append(shown.json())
        return views[-1]["phase"] in ("Complete", "Failed", "Cancelled")

    wait_for(ended, timeout=180, what=f"export {name} run by the operator and a worker")
    view = views[-1]
    assert view["phase"] == "Complete", view["message"]
    downloaded = httpx.get(view["downloadUrl"])
    assert downloaded.status_code == 200
    return view, downloaded.content


def imported_sequence(api: httpx.Client, owner: ApiTenant, settings: Settings) -> int:
    """A sequence dataset holding `xtreme1_archive()`, imported by the worker."""
    dataset, data = new_dataset(api, owner, "POINT_CLOUD_SEQUENCE"), xtreme1_archive()
    item, key = register_item(owner.context, dataset, UploadRequest(name="x1.zip", size=len(data)))
    put_object(settings, owner, key, data)
    publish(owner.context.connection, "archives", item, key)
    wait_for(
        lambda: api.get(f"/v1/items/{item}", headers=owner.auth).json()["status"] == "imported",
        timeout=90,
        what="archive imported",
    )
    return dataset


def test_an_imported_xtreme1_archive_exports_to_the_same_objects(
    api: httpx.Client, owner: ApiTenant, worker: WorkerProcess, platform: Platform,
    stack_settings: Settings,
) -> None:  # fmt: skip
    dataset = imported_sequence(api, owner, stack_settings)
    view, body = export(api, owner, dataset, {"format": "xtreme1"})
    assert (view["done"], view["total"]) == (3, 3)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == sorted(f"scene_1/result/{s}.json" for s in STEMS)
        for stem in STEMS:
            (entry,) = orjson.loads(archive.read(f"scene_1/result/{stem}.json"))
            assert orjson.dumps(entry["objects"]) == orjson.dumps(result(stem)["objects"])
    assert view["report"]["formats"]["xtreme1"] == {"items": 3, "objects": 6, "skipped": 0,
                                                    "lossy": 0, "imagesWithoutSize": 0}  # fmt: skip


def test_a_nuscenes_export_links_the_track_through_its_frames_and_repeats_byte_for_byte(
    api: httpx.Client, owner: ApiTenant, worker: WorkerProcess, platform: Platform,
    stack_settings: Settings,
) -> None:  # fmt: skip
    dataset = imported_sequence(api, owner, stack_settings)
    body = {"format": "nuscenes", "classes": {"7": "vehicle.car"}}
    view, first = export(api, owner, dataset, body)
    _, again = export(api, owner, dataset, body)
    assert first == again, "tokens come from ids: the same data exports to the same bytes"
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        table = {
            name.removeprefix("v1.0-annostack/").removesuffix(".json"): orjson.loads(
                archive.read(name)
            )
            for name in archive.namelist()
        }
    assert {"scene", "sample", "sample_data", "sample_annotation", "instance", "category",
            "attribute", "visibility", "sensor", "calibrated_sensor", "ego_pose", "log",
            "map"} <= set(table)  # fmt: skip
    (scene,) = table["scene"]
    samples = {sample["token"]: sample for sample in table["sample"]}
    chain = [samples[scene["first_sample_token"]]]
    while chain[-1]["next"]:
        chain.append(samples[chain[-1]["next"]])
    assert (
        len(chain) == scene["nbr_samples"] == 3 and chain[-1]["token"] == scene["last_sample_token"]
    )
    lidar = {d["sample_token"]: d["filename"] for d in table["sample_data"]}
    assert [lidar[s["token"]] for s in chain] == [
        f"scene_1/lidar_point_cloud_0/{stem}.pcd" for stem in STEMS
    ]
    (car,) = table["instance"]  # one track, t1, over the three frames
    assert car["nbr_annotations"] == 3
    annotations = {a["token"]: a for a in table["sample_annotation"]}
    walked = [annotations[car["first_annotation_token"]]]
    while walked[-1]["next"]:
        walked.append(annotations[walked[-1]["next"]])
    assert [a["sample_token"] for a in walked] == [s["token"] for s in chain]
    assert walked[0]["size"] == [2, 4, 1.5]  # nuScenes' order: width, length, height
    assert walked[0]["translation"] == [5, 1, 0.5]
    assert {c["name"] for c in table["category"]} == {"vehicle.car"}
    assert view["report"]["formats"]["nuscenes"]["skipped"] == 3  # the point segments
    assert view["report"]["unsupportedTypes"] == {"nuscenes:3D_SEGMENT_POINTS": 3}


def test_a_kitti_export_equals_the_hand_checked_labels(
    api: httpx.Client, owner: ApiTenant, worker: WorkerProcess, platform: Platform,
    stack_settings: Settings,
) -> None:  # fmt: skip
    dataset = new_dataset(api, owner, "POINT_CLOUD_SEQUENCE")
    prefix = f"kitti-{uuid.uuid4().hex[:6]}/"
    for stem in ("000001", "000002"):
        put_object(stack_settings, owner, f"{prefix}training/velodyne/{stem}.bin", b"\0" * 64)
        put_object(stack_settings, owner, f"{prefix}training/image_2/{stem}.png", jpeg())
        put_object(
            stack_settings, owner, f"{prefix}training/calib/{stem}.txt", KITTI_CALIB.encode()
        )
    imported = import_source(
        owner.context, dataset, "POINT_CLOUD_SEQUENCE", ImportSource(s3_prefix=prefix)
    )
    assert imported.scenes is not None and imported.scenes.frames == 2
    items = api.get(f"/v1/datasets/{dataset}/items", headers=owner.auth).json()["items"]
    clouds = {i["name"].rsplit("/", 1)[-1]: i["id"] for i in items if i["kind"] == "pointcloud"}
    save(api, owner, clouds["000001.bin"], "gt", [CAR])
    polygon = {"id": "p1", "type": "POLYGON", "classId": "car",
               "points": [{"x": 0, "y": 0}, {"x": 1, "y": 0}, {"x": 0, "y": 1}]}  # fmt: skip
    save(api, owner, clouds["000002.bin"], "gt", [CAR, polygon])
    body = {"format": "kitti", "source": "gt"}
    view, data = export(api, owner, dataset, body)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.read("training/label_2/000001.txt").decode() == CAR_LINE
        assert archive.read("training/label_2/000002.txt").decode() == CAR_LINE
        calib = archive.read("training/calib/000001.txt").decode().splitlines()
    assert calib[2] == "P2: " + " ".join(
        f"{v:.12e}" for v in (700, 0, 600, 0, 0, 700, 180, 0, 0, 0, 1, 0)
    )
    assert view["report"]["unsupportedTypes"] == {"kitti:POLYGON": 1}
    (skipped,) = view["report"]["skipped"]
    assert (skipped["item"], skipped["objectId"]) == ("training/000002", "p1")


def test_point_clouds_uploaded_one_by_one_export_as_the_unsequenced_scene(
    api: httpx.Client, owner: ApiTenant, worker: WorkerProcess, platform: Platform,
) -> None:  # fmt: skip
    dataset = new_dataset(api, owner, "POINT_CLOUD")
    annotated, _ = register_item(owner.context, dataset, UploadRequest(name="lidar/7.pcd", size=1))
    register_item(owner.context, dataset, UploadRequest(name="lidar/8.pcd", size=1))
    save(api, owner, annotated, "default", [CAR])
    view, body = export(api, owner, dataset, {"format": "xtreme1"})
    assert (view["done"], view["total"]) == (2, 2)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["unsequenced/result/lidar/7.json"]
        (entry,) = orjson.loads(archive.read("unsequenced/result/lidar/7.json"))
    (box,) = entry["objects"]
    assert (box["id"], box["type"]) == (CAR["id"], "3D_BOX")


def test_a_coco_export_of_2d_boxes_and_only_the_callers_tenant_sees_it(
    api: httpx.Client, owner: ApiTenant, tenant_b: ApiTenant, worker: WorkerProcess,
    platform: Platform, stack_settings: Settings,
) -> None:  # fmt: skip
    dataset = new_dataset(api, owner, "IMAGE")
    image, key = register_item(owner.context, dataset, UploadRequest(name="a.jpg", size=1))
    put_object(stack_settings, owner, key, jpeg())
    publish(owner.context.connection, "thumbnails", image, key)  # records its size
    unsized, _ = register_item(owner.context, dataset, UploadRequest(name="b.jpg", size=1))
    wait_for(
        lambda: api.get(f"/v1/items/{image}", headers=owner.auth).json()["status"] == "processed",
        timeout=90,
        what="a.jpg processed",
    )
    rect = {"id": "r1", "type": "RECTANGLE", "classId": "car",
            "contour": {"x": 10, "y": 20, "width": 30, "height": 40}}  # fmt: skip
    save(api, owner, image, "default", [rect, {**CAR, "id": "c9"}])
    body = {"format": "coco", "categories": ["person", "car"]}
    view, data = export(api, owner, dataset, body)
    coco = orjson.loads(data)
    assert coco["images"] == [
        {"id": image, "file_name": "a.jpg", "width": 1280, "height": 720},  # jpeg()'s size
        {"id": unsized, "file_name": "b.jpg", "width": None, "height": None},
    ]
    (annotation,) = coco["annotations"]
    assert (annotation["bbox"], annotation["category_id"]) == ([10, 20, 30, 40], 2)
    assert view["report"]["unsupportedTypes"] == {"coco:3D_BOX": 1}
    assert view["report"]["imagesWithoutSize"] == ["b.jpg"]
    hidden = api.get(f"/v1/exports/{view['id']}", headers=tenant_b.auth)
    assert hidden.status_code == 404


def test_a_bad_export_request_is_refused_with_what_to_change(
    api: httpx.Client, owner: ApiTenant
) -> None:
    dataset = new_dataset(api, owner, "IMAGE")
    body = {"format": "coco", "archive": "zip"}
    refused = api.post(f"/v1/datasets/{dataset}/exports", json=body, headers=owner.auth)
    assert refused.status_code == 422
    assert "a COCO export is one JSON file" in refused.text
    missing = api.get("/v1/exports/export-1-00000000", headers=owner.auth)
    assert missing.status_code == 404
