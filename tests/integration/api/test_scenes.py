"""Scenes on the real stack: an Xtreme1 archive unpacked by a real worker (as its tenant's own
database user) and a KITTI prefix registered as the operator registers it, both read back
through the API — a dataset's scenes listed, frames in order, calibration attached, imported
annotations (Xtreme1 results, KITTI labels as LiDAR boxes) loadable through the batch
endpoint — and each bad entry reported with its reason while the rest is imported.

A tenant of its own, as test_browsing has: a worker consumes its topics for the module; and
another (`stranger`) that must not see its scenes.
"""

from __future__ import annotations

import io
import math
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.tenant_tables import scenes
from annostack.domain.processing import ImportSource
from annostack.services.dataset_imports import ImportResult, import_source
from annostack.services.uploads import UploadRequest, register_item
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.workers.test_worker import publish
from tests.integration.workloads import WorkerProcess, jpeg, small_cloud
from tests.support import wait_for

pytestmark = pytest.mark.integration

INTERNAL = {"fx": 933.4667, "fy": 934.6754, "cx": 896.4692, "cy": 507.3557}
ROW_MAJOR = [-0.72, 0.69, 0.05, 0.0093, -0.04, 0.03, -0.99, 1.658, -0.69, -0.72, 0.004, -1.02,
             0, 0, 0, 1]  # fmt: skip
COLUMN_MAJOR = [ROW_MAJOR[c * 4 + r] for r in range(4) for c in range(4)]
STEMS = ["10", "2", "1"]  # written out of order: read back 1, 2, 10


def box(stem: str) -> dict[str, Any]:
    return {
        "id": f"car-{stem}", "type": "3D_BOX", "classId": 7, "className": "Car",
        "trackId": "t1", "trackName": "1", "classValues": [{"id": "occluded", "value": "no"}],
        "contour": {"center3D": {"x": 5, "y": 1, "z": 0.5}, "size3D": {"x": 4, "y": 2, "z": 1.5},
                    "rotation3D": {"x": 0, "y": 0, "z": 0.3}, "pointN": 42},
    }  # fmt: skip


def xtreme1_archive() -> bytes:
    """scene_1: three frames of two cameras, configs of both shapes; scene_2: one frame; and
    one bad entry of each kind."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for number, stem in enumerate(STEMS):
            archive.writestr(
                f"export/scene_1/lidar_point_cloud_0/{stem}.pcd", small_cloud(300, number)
            )
            for camera in (0, 1):
                archive.writestr(f"export/scene_1/camera_image_{camera}/{stem}.jpg", jpeg())
            configs = [
                {"cameraInternal": INTERNAL, "cameraExternal": COLUMN_MAJOR, "rowMajor": False,
                 "width": 64, "height": 48},
                {"camera_internal": INTERNAL, "camera_external": ROW_MAJOR, "width": 64,
                 "height": 48},
            ]  # fmt: skip
            archive.writestr(f"export/scene_1/camera_config/{stem}.json", orjson.dumps(configs))
            result = {"dataId": number, "objects": [box(stem)]}
            archive.writestr(f"export/scene_1/result/{stem}.json", orjson.dumps(result))
        archive.writestr("export/scene_2/lidar_point_cloud_0/0.pcd", small_cloud(300, 9))
        # Bad entries: a frame without a cloud, a result for no frame, a duplicate stem, a
        # config that does not parse.
        archive.writestr("export/scene_2/camera_image_0/7.jpg", jpeg())
        archive.writestr("export/scene_2/result/8.json", orjson.dumps({"objects": []}))
        archive.writestr("export/scene_2/camera_image_0/0.jpg", jpeg())
        archive.writestr("export/scene_2/camera_image_0/0.png", jpeg())
        archive.writestr("export/scene_2/camera_config/0.json", b"{not json")
    return out.getvalue()


def scene_ids(owner: ApiTenant, dataset: int) -> dict[str, int]:
    with owner.context.engine.connect() as conn:
        rows = conn.execute(
            sa.select(scenes.c.name, scenes.c.id).where(scenes.c.dataset_id == dataset)
        )
        return {str(name): int(scene) for name, scene in rows}


def new_dataset(api: httpx.Client, owner: ApiTenant) -> int:
    body = {"name": f"sc-{uuid.uuid4().hex[:8]}", "displayName": "Drive",
            "dataType": "POINT_CLOUD_SEQUENCE"}  # fmt: skip
    response = api.post("/v1/datasets", json=body, headers=owner.auth)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def get(api: httpx.Client, owner: ApiTenant, path: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params, headers=owner.auth)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


@pytest.fixture(scope="module")
def imported(
    api: httpx.Client, owner: ApiTenant, worker: WorkerProcess, stack_settings: Settings
) -> tuple[int, int]:
    """(dataset, archive item) once a real worker has unpacked the archive."""
    dataset, data = new_dataset(api, owner), xtreme1_archive()
    item, key = register_item(owner.context, dataset, UploadRequest(name="x1.zip", size=len(data)))
    store = ObjectStoreAdmin(stack_settings.s3).client
    store.put_object(owner.context.connection.bucket, key, io.BytesIO(data), len(data))
    publish(owner.context.connection, "archives", item, key)
    wait_for(
        lambda: get(api, owner, f"/v1/items/{item}")["status"] == "imported",
        timeout=90,
        what="archive imported",
    )
    return dataset, item


def test_an_xtreme1_archive_becomes_scenes_in_order_with_calibration(
    api: httpx.Client, owner: ApiTenant, imported: tuple[int, int]
) -> None:
    dataset, _ = imported
    ids = scene_ids(owner, dataset)
    assert set(ids) == {"export/scene_1", "export/scene_2"}
    scene = get(api, owner, f"/v1/scenes/{ids['export/scene_1']}")
    assert (scene["layout"], scene["frameCount"], scene["next"]) == ("xtreme1", 3, None)
    assert [f["name"] for f in scene["frames"]] == ["1", "2", "10"]
    assert [f["index"] for f in scene["frames"]] == [0, 1, 2]
    for frame in scene["frames"]:
        assert (
            frame["pointCloud"]["name"] == f"export/scene_1/lidar_point_cloud_0/{frame['name']}.pcd"
        )
        cameras = {image["camera"]: image for image in frame["images"]}
        assert set(cameras) == {"camera_image_0", "camera_image_1"}
        for image in cameras.values():  # both shapes, both majors: the same row-major matrix
            calibration = image["calibration"]
            assert calibration["intrinsics"] == INTERNAL
            assert calibration["extrinsics"] == ROW_MAJOR
            assert (calibration["width"], calibration["height"]) == (64, 48)
    (only,) = get(api, owner, f"/v1/scenes/{ids['export/scene_2']}")["frames"]
    assert only["images"] == [], "its two images of one stem are both left out"


def test_imported_annotations_load_through_the_batch_endpoint(
    api: httpx.Client, owner: ApiTenant, imported: tuple[int, int]
) -> None:
    dataset, _ = imported
    scene = get(api, owner, f"/v1/scenes/{scene_ids(owner, dataset)['export/scene_1']}")
    clouds = [frame["pointCloud"] for frame in scene["frames"]]
    etags = {}
    for cloud in clouds:
        (annotation,) = cloud["annotations"]
        assert (annotation["source"], annotation["objectCount"]) == ("imported", 1)
        etags[cloud["id"]] = annotation["etag"]
    loaded = api.post(
        "/v1/annotations/batch-load",
        json={"source": "imported", "itemIds": [cloud["id"] for cloud in clouds]},
        headers=owner.auth,
    )
    assert loaded.status_code == 200, loaded.text
    results = loaded.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 200]
    for result, frame in zip(results, scene["frames"], strict=True):
        assert result["etag"] == etags[result["itemId"]]
        (obj,) = result["document"]["objects"]
        assert obj["type"] == "3D_BOX" and obj["id"] == f"car-{frame['name']}"
        assert obj["contour"]["center"] == [5, 1, 0.5] and obj["contour"]["pointN"] == 42
        assert obj["className"] == "Car" and obj["classValues"][0]["id"] == "occluded"


def test_bad_entries_are_reported_and_frames_page_by_index(
    api: httpx.Client, owner: ApiTenant, imported: tuple[int, int]
) -> None:
    dataset, item = imported
    reason = get(api, owner, f"/v1/items/{item}")["statusReason"]
    # Five problems (each also logged by the worker); the reason shows the first ones.
    assert reason.startswith("2 scene(s), 4 frame(s), 3 annotated; 5 problem(s): ")
    assert "duplicate stem '0' in camera_image_0/" in reason and len(reason) <= 512
    scene = scene_ids(owner, dataset)["export/scene_1"]
    first = get(api, owner, f"/v1/scenes/{scene}/frames", limit=2)
    rest = get(api, owner, f"/v1/scenes/{scene}/frames", limit=2, after=first["next"])
    assert [f["name"] for f in first["frames"] + rest["frames"]] == ["1", "2", "10"]
    assert rest["next"] is None
    refused = api.get(f"/v1/scenes/{scene}/frames", params={"after": "bm9wZQ"}, headers=owner.auth)
    assert refused.status_code == 422


KITTI_CALIB = (
    "P0: 700 0 600 0 0 700 180 0 0 0 1 0\nP1: 700 0 600 -380 0 700 180 0 0 0 1 0\n"
    "P2: 700 0 600 42 0 700 180 7 0 0 1 0.5\nP3: 700 0 600 -340 0 700 180 2 0 0 1 0.003\n"
    "R0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27\n"
)
CAR_LABEL = "Car 0 0 -1.5 100 100 200 200 1.5 1.6 4.0 2 1.6 10 -1.6"
# By hand: R0_rect = I and Tr_velo_to_cam = [R|t] with the ideal axis swap (x_cam = -y_velo,
# y_cam = -z_velo, z_cam = x_velo), t = (0, -0.08, -0.27). The label's bottom centre
# (2, 1.6, 10) is R^T (p - t) = (10 + 0.27, -2, -(1.6 + 0.08)) = (10.27, -2, -1.68) in the
# LiDAR frame; the box's centre is h/2 = 0.75 above it. Size: l, w, h from KITTI's h w l
# = 1.5 1.6 4.0. Yaw: -rotation_y - pi/2 for the ideal rotation.
CAR_BOX = {"center": [10.27, -2.0, -0.93], "size": [4.0, 1.6, 1.5],
           "rotation": [0.0, 0.0, 1.6 - math.pi / 2]}  # fmt: skip
DONT_CARE_LABEL = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10"


@dataclass(frozen=True)
class KittiImport:
    dataset: int
    result: ImportResult


@pytest.fixture(scope="module")
def kitti(api: httpx.Client, owner: ApiTenant, stack_settings: Settings) -> KittiImport:
    """A KITTI object prefix registered as the operator registers it. Frames 000002 and 000010
    are whole (000010's labels with a line that does not parse), 000007 has no calib file, and
    000005 only labels."""
    dataset = new_dataset(api, owner)
    prefix = f"kitti-{uuid.uuid4().hex[:6]}/"
    files = {}
    for stem in ("000010", "000002", "000007"):
        files[f"training/velodyne/{stem}.bin"] = small_cloud_bin()
        files[f"training/image_2/{stem}.png"] = jpeg()
    for stem in ("000010", "000002"):
        files[f"training/calib/{stem}.txt"] = KITTI_CALIB.encode()
    files["training/label_2/000002.txt"] = f"{CAR_LABEL}\n{DONT_CARE_LABEL}\n".encode()
    files["training/label_2/000010.txt"] = f"{CAR_LABEL}\nCar 0 0\n".encode()
    files["training/label_2/000007.txt"] = f"{CAR_LABEL}\n".encode()
    files["training/label_2/000005.txt"] = f"{CAR_LABEL}\n".encode()
    store = ObjectStoreAdmin(stack_settings.s3).client
    bucket = owner.context.connection.bucket
    for name, body in files.items():
        store.put_object(bucket, prefix + name, io.BytesIO(body), len(body))
    # As the Dataset controller does for `source.s3Prefix` (the operator's own pass).
    result = import_source(
        owner.context, dataset, "POINT_CLOUD_SEQUENCE", ImportSource(s3_prefix=prefix)
    )
    return KittiImport(dataset, result)


def test_a_kitti_prefix_becomes_a_scene_with_calibration(
    api: httpx.Client, owner: ApiTenant, kitti: KittiImport
) -> None:
    made = kitti.result.scenes
    assert made is not None and (made.scenes, made.frames, made.annotations) == (1, 3, 2)
    (scene_id,) = scene_ids(owner, kitti.dataset).values()
    scene = get(api, owner, f"/v1/scenes/{scene_id}")
    assert (scene["name"], scene["layout"]) == ("training", "kitti-object")
    assert [f["name"] for f in scene["frames"]] == ["000002", "000007", "000010"]
    (image,) = scene["frames"][0]["images"]
    assert image["camera"] == "image_2" and image["item"]["name"] == "training/image_2/000002.png"
    calibration = image["calibration"]
    assert calibration["intrinsics"] == {"fx": 700, "fy": 700, "cx": 600, "cy": 180}
    # t = K^-1 (42, 7, 0.5), added to Tr_velo_to_cam's translation (R0_rect is the identity).
    assert calibration["extrinsics"][3] == pytest.approx((42 - 600 * 0.5) / 700)
    assert calibration["extrinsics"][11] == pytest.approx(-0.27 + 0.5)
    assert calibration["width"] is None, "KITTI object calib files do not say"
    assert scene["frames"][1]["images"][0]["calibration"] is None, "000007 has no calib file"


def test_kitti_labels_load_through_the_batch_endpoint_as_lidar_boxes(
    api: httpx.Client, owner: ApiTenant, kitti: KittiImport
) -> None:
    (scene_id,) = scene_ids(owner, kitti.dataset).values()
    clouds = [frame["pointCloud"] for frame in get(api, owner, f"/v1/scenes/{scene_id}")["frames"]]
    indexed = [[(a["source"], a["objectCount"]) for a in cloud["annotations"]] for cloud in clouds]
    assert indexed == [[("imported", 2)], [], [("imported", 1)]]
    loaded = api.post(
        "/v1/annotations/batch-load",
        json={"source": "imported", "itemIds": [cloud["id"] for cloud in clouds]},
        headers=owner.auth,
    )
    assert loaded.status_code == 200, loaded.text
    first, missing, last = loaded.json()["results"]
    assert (first["status"], missing["status"], last["status"]) == (200, 404, 200)
    assert first["etag"] == clouds[0]["annotations"][0]["etag"]
    car, region = first["document"]["objects"]
    assert (car["id"], car["type"], car["classId"]) == ("kitti-1", "3D_BOX", "Car")
    for key, expected in CAR_BOX.items():
        assert car["contour"][key] == pytest.approx(expected, abs=1e-9), key
    assert car["attributes"] == {"truncated": 0, "occluded": 0}
    assert car["kitti"] == {"alpha": -1.5, "bbox": [100, 100, 200, 200]}
    assert (region["id"], region["type"], region["classId"]) == ("kitti-2", "RECTANGLE", "DontCare")
    assert region["contour"] == pytest.approx(
        {"x": 503.89, "y": 169.71, "width": 86.72, "height": 20.42}
    )
    (only,) = last["document"]["objects"]
    assert only["id"] == "kitti-1" and only["contour"]["center"] == pytest.approx(CAR_BOX["center"])
    assert last["document"]["kittiUnconverted"] == [{"line": 2, "text": "Car 0 0"}]


def test_kitti_labels_that_cannot_be_imported_are_reported(kitti: KittiImport) -> None:
    assert kitti.result.scenes is not None
    found = {problem.name: problem.reason for problem in kitti.result.scenes.problems}
    assert set(found) == {f"training/label_2/{stem}.txt" for stem in ("000005", "000007", "000010")}
    assert "has no point cloud: not imported" in found["training/label_2/000005.txt"]
    assert "has no calib/000007.txt" in found["training/label_2/000007.txt"]
    assert "label line 2 has 3 values" in found["training/label_2/000010.txt"]


def test_a_datasets_scenes_are_listed_in_pages_and_only_to_its_tenant(
    api: httpx.Client, owner: ApiTenant, stranger: ApiTenant, imported: tuple[int, int]
) -> None:
    dataset, _ = imported
    path = f"/v1/datasets/{dataset}/scenes"
    first = get(api, owner, path, limit=1)
    rest = get(api, owner, path, limit=1, after=first["next"])
    assert rest["next"] is None
    listed = first["scenes"] + rest["scenes"]
    ids = scene_ids(owner, dataset)
    assert [s["id"] for s in listed] == sorted(ids.values())
    assert {s["name"]: (s["id"], s["layout"], s["frameCount"]) for s in listed} == {
        "export/scene_1": (ids["export/scene_1"], "xtreme1", 3),
        "export/scene_2": (ids["export/scene_2"], "xtreme1", 1),
    }
    assert all(s["datasetId"] == dataset and s["createdAt"] for s in listed)
    forged = api.get(path, params={"after": "bm9wZQ"}, headers=owner.auth)
    assert forged.status_code == 422 and "not a cursor" in forged.json()["detail"]
    refused = api.get(path, headers=stranger.auth)
    assert refused.status_code == 404, refused.text
    assert refused.json() == {"detail": f"dataset {dataset} not found"}


def small_cloud_bin() -> bytes:
    """Four points of KITTI's float32 x y z reflectance."""
    return np.array([[1, 2, 0.5, 0.3], [4, -1, 0.2, 0.9], [8, 0, 1, 0.1], [3, 3, 0, 0.5]],
                    dtype="<f4").tobytes()  # fmt: skip
