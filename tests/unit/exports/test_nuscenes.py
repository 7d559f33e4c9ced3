"""nuScenes tables from scenes of 3D boxes: the schema's field names, linked lists that the
devkit can walk, conventions worked out by hand, stable tokens, bounded memory."""

from __future__ import annotations

import io
import math
import tempfile
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest

from annostack.domain.annotations import AnnotationDocument
from annostack.domain.calibration import CameraCalibration, FrameCamera
from annostack.domain.exports.archive import Body
from annostack.domain.exports.nuscenes import (
    NOT_COUNTED,
    VERSION,
    NuScenesFrame,
    NuScenesWriter,
    sample_timestamp,
    token,
)
from annostack.domain.exports.nuscenes_geometry import (
    camera_pose,
    matrix_quaternion,
    nuscenes_size,
    yaw_quaternion,
)

# Every table's fields, as docs/schema_nuscenes.md of nutonomy/nuscenes-devkit lists them.
SCHEMA = {
    "attribute": {"token", "name", "description"},
    "calibrated_sensor": {"token", "sensor_token", "translation", "rotation", "camera_intrinsic"},
    "category": {"token", "name", "description", "index"},
    "ego_pose": {"token", "translation", "rotation", "timestamp"},
    "instance": {"token", "category_token", "nbr_annotations", "first_annotation_token",
                 "last_annotation_token"},
    "log": {"token", "logfile", "vehicle", "date_captured", "location"},
    "map": {"token", "log_tokens", "category", "filename"},
    "sample": {"token", "timestamp", "scene_token", "next", "prev"},
    "sample_annotation": {"token", "sample_token", "instance_token", "attribute_tokens",
                          "visibility_token", "translation", "size", "rotation", "num_lidar_pts",
                          "num_radar_pts", "next", "prev"},
    "sample_data": {"token", "sample_token", "ego_pose_token", "calibrated_sensor_token",
                    "filename", "fileformat", "width", "height", "timestamp", "is_key_frame",
                    "next", "prev"},
    "scene": {"token", "name", "description", "log_token", "nbr_samples", "first_sample_token",
              "last_sample_token"},
    "sensor": {"token", "channel", "modality"},
    "visibility": {"token", "level", "description"},
}  # fmt: skip
# Foreign keys: (table, field) -> the table it points into ("" allowed where the schema says).
REFERENCES = {
    ("calibrated_sensor", "sensor_token"): "sensor",
    ("instance", "category_token"): "category",
    ("instance", "first_annotation_token"): "sample_annotation",
    ("instance", "last_annotation_token"): "sample_annotation",
    ("map", "log_tokens"): "log",
    ("sample", "scene_token"): "scene",
    ("sample_annotation", "sample_token"): "sample",
    ("sample_annotation", "instance_token"): "instance",
    ("sample_annotation", "attribute_tokens"): "attribute",
    ("sample_data", "sample_token"): "sample",
    ("sample_data", "ego_pose_token"): "ego_pose",
    ("sample_data", "calibrated_sensor_token"): "calibrated_sensor",
    ("scene", "log_token"): "log",
    ("scene", "first_sample_token"): "sample",
    ("scene", "last_sample_token"): "sample",
}
Tables = dict[str, dict[str, dict[str, Any]]]  # table -> token -> record

CAMERA = CameraCalibration.model_validate(
    {"intrinsics": {"fx": 700, "fy": 700, "cx": 600, "cy": 180}, "width": 1242, "height": 375,
     "extrinsics": [0, -1, 0, 0, 0, 0, -1, 1.6, 1, 0, 0, -1, 0, 0, 0, 1]}
)  # fmt: skip


def box(track: str | None = None, yaw: float = 0.0, **fields: Any) -> dict[str, Any]:
    contour = {"center": [10, 2, -0.75], "size": [4, 2, 1.5], "rotation": [0, 0, yaw]}
    obj = {"id": f"box-{track}", "type": "3D_BOX", "classId": "car", "contour": contour}
    return {**obj, **({"trackId": track} if track else {}), **fields}


def document(*objects: dict[str, Any]) -> AnnotationDocument:
    return AnnotationDocument.model_validate({"objects": list(objects)})


def frame(scene: int, index: int, **fields: Any) -> NuScenesFrame:
    item = scene * 100 + index
    return NuScenesFrame(scene, f"scene_{scene}", index, item,
                         f"scene_{scene}/lidar_point_cloud_0/{index}.pcd", **fields)  # fmt: skip


def read_tables(entries: Sequence[tuple[str, Body]]) -> dict[str, list[dict[str, Any]]]:
    """Each table as the devkit's `__load_table__` reads it (one JSON array per file)."""
    tables = {}
    for name, body in entries:
        assert not isinstance(body, bytes)
        body.seek(0)
        assert name.startswith(f"{VERSION}/") and name.endswith(".json")
        tables[name.removeprefix(f"{VERSION}/").removesuffix(".json")] = orjson.loads(body.read())
    return tables


def checked(tables: dict[str, list[dict[str, Any]]]) -> Tables:
    """The tables by token, once every field is the schema's and every key resolves."""
    assert set(tables) == set(SCHEMA), "the 13 tables the devkit loads, no others"
    by_token: Tables = {}
    for name, records in tables.items():
        assert all(set(record) == SCHEMA[name] for record in records), name
        by_token[name] = {record["token"]: record for record in records}
        assert len(by_token[name]) == len(records), f"{name}: a token is used twice"
    for (name, key), target in REFERENCES.items():
        for record in tables[name]:
            values = record[key] if isinstance(record[key], list) else [record[key]]
            assert all(value in by_token[target] for value in values), (name, key, record)
    assert all(len(t) == 32 and int(t, 16) >= 0 for name in by_token if name != "visibility"
               for t in by_token[name])  # fmt: skip
    return by_token


def export(
    frames: Sequence[tuple[NuScenesFrame, list[tuple[str, AnnotationDocument]]]],
    classes: dict[str, str] | None = None,
) -> tuple[Tables, list[Any]]:
    writer = NuScenesWriter(io.BytesIO, classes)
    outcomes = [writer.add(f, documents) for f, documents in frames]
    return checked(read_tables(writer.close())), outcomes


def walk(records: dict[str, dict[str, Any]], first: str) -> list[dict[str, Any]]:
    """A linked list from its first record, following `next` (and checking `prev`)."""
    found, previous, at = [], "", first
    while at:
        record = records[at]
        assert record["prev"] == previous
        found.append(record)
        previous, at = at, record["next"]
    return found


# -- conventions, by hand ---------------------------------------------------------------------


def test_yaw_becomes_a_quaternion_about_z_in_w_x_y_z_order() -> None:
    # yaw = pi/2: a half-angle of pi/4 about +z.
    assert yaw_quaternion(math.pi / 2) == pytest.approx([math.cos(math.pi / 4), 0, 0,
                                                         math.sin(math.pi / 4)])  # fmt: skip
    assert yaw_quaternion(0.0) == [1.0, 0.0, 0.0, 0.0]
    # The same heading by another turn is spelled the same (w >= 0).
    assert yaw_quaternion(3 * math.pi / 2) == pytest.approx(yaw_quaternion(-math.pi / 2))


def rotation_of(q: Sequence[float]) -> np.ndarray[Any, Any]:
    """pyquaternion's rotation matrix of [w, x, y, z] (the devkit's reader), by its formula."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


@pytest.mark.parametrize("yaw", [0.3, math.pi / 2, -2.0, 3.0])
def test_a_box_heads_along_its_yaw_once_rotated(yaw: float) -> None:
    heading = rotation_of(yaw_quaternion(yaw)) @ [1, 0, 0]  # the devkit's length axis
    assert heading == pytest.approx([math.cos(yaw), math.sin(yaw), 0])


def test_sizes_are_width_length_height() -> None:
    assert nuscenes_size([4.0, 2.0, 1.5]) == [2.0, 4.0, 1.5]


def test_an_ideal_camera_gets_nuscenes_front_camera_rotation_and_its_place() -> None:
    # x_cam = -y, y_cam = -z, z_cam = x: camera to LiDAR is its transpose, whose quaternion
    # (worked with Shepperd's formula, trace 0) is [0.5, -0.5, 0.5, -0.5], nuScenes'
    # CAM_FRONT to within its calibration. The camera sits 1 m ahead, 1.6 m up: t = -R c.
    translation, rotation = camera_pose(CAMERA.extrinsics)
    assert rotation == [0.5, -0.5, 0.5, -0.5]
    assert translation == pytest.approx([1.0, 0.0, 1.6])


def test_matrix_quaternions_turn_as_their_matrices() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        matrix = rotation_of(q)
        found = matrix_quaternion(matrix)
        assert found[0] >= 0 and rotation_of(found) == pytest.approx(matrix)


def test_timestamps_are_the_frames_own_else_two_per_second_a_day_per_scene() -> None:
    day = 86_400 * 10**6
    assert [sample_timestamp(None, 3, i) for i in range(3)] == [3 * day, 3 * day + 500_000,
                                                                3 * day + 1_000_000]  # fmt: skip
    assert sample_timestamp(None, 4, 0) == 4 * day, "scenes start apart"
    when = datetime(2024, 5, 1, 12, 0, 0, 123_456)
    expected = 1_714_564_800_123_456
    assert sample_timestamp(when, 3, 7) == expected, "a database time is UTC"
    assert sample_timestamp(when.replace(tzinfo=UTC), 3, 7) == expected
    later = when.replace(tzinfo=timezone(timedelta(hours=2)))
    assert sample_timestamp(later, 3, 7) == expected - 2 * 3600 * 10**6


def test_tokens_are_32_hex_digits_of_their_table_and_ids() -> None:
    one = token("sample", 42)
    assert len(one) == 32 and int(one, 16) >= 0
    assert token("sample", 42) == one, "the same ids, the same token"
    assert len({one, token("ego_pose", 42), token("sample", 43), token("sample", "42")}) == 4
    assert token("x", "a", "b") != token("x", "a b") != token("x", "ab")


# -- the tables ------------------------------------------------------------------------------


def test_samples_and_sensor_data_are_linked_per_scene() -> None:
    frames = [(frame(1, i), []) for i in range(3)] + [(frame(2, 0), [])]
    tables, _ = export(frames)
    first, second = tables["scene"].values()
    assert (first["name"], first["nbr_samples"], second["nbr_samples"]) == ("scene_1", 3, 1)
    samples = walk(tables["sample"], first["first_sample_token"])
    assert [s["token"] for s in samples] == [token("sample", 100 + i) for i in range(3)]
    assert samples[-1]["token"] == first["last_sample_token"]
    assert [s["timestamp"] for s in samples] == [sample_timestamp(None, 1, i) for i in range(3)]
    assert {s["scene_token"] for s in samples} == {first["token"]}
    (alone,) = walk(tables["sample"], second["first_sample_token"])
    assert alone["token"] == second["last_sample_token"], "a scene of one sample"
    lidar = walk(tables["sample_data"], token("sample_data", 100, "LIDAR_TOP"))
    assert [d["filename"] for d in lidar] == [f"scene_1/lidar_point_cloud_0/{i}.pcd"
                                              for i in range(3)]  # fmt: skip
    assert [d["sample_token"] for d in lidar] == [s["token"] for s in samples]
    assert {(d["fileformat"], d["is_key_frame"]) for d in lidar} == {("pcd", True)}


def test_boxes_of_a_track_are_one_instance_linked_in_frame_order() -> None:
    frames = [
        (frame(1, 0), [("default", document(box("t1"), box("t2")))]),
        (frame(1, 1), [("default", document(box("t2"), box(None)))]),  # t1 not seen here
        (frame(1, 2), [("default", document(box("t1")))]),
    ]
    tables, outcomes = export(frames)
    assert [o.exported for o in outcomes] == [2, 2, 1]
    instances = {i["nbr_annotations"]: i for i in tables["instance"].values()}
    assert sorted(i["nbr_annotations"] for i in tables["instance"].values()) == [1, 2, 2]
    t1 = tables["instance"][token("instance", 1, "default", "t1", token("category", "car"))]
    chain = walk(tables["sample_annotation"], t1["first_annotation_token"])
    assert [a["sample_token"] for a in chain] == [token("sample", 100), token("sample", 102)]
    assert chain[-1]["token"] == t1["last_annotation_token"]
    assert {a["instance_token"] for a in chain} == {t1["token"]}
    untracked = instances[1]
    (only,) = walk(tables["sample_annotation"], untracked["first_annotation_token"])
    assert only["token"] == untracked["last_annotation_token"]
    assert (only["prev"], only["next"]) == ("", "")


def test_an_annotation_holds_the_box_in_nuscenes_terms() -> None:
    xtreme1 = box("t1", math.pi / 2)
    xtreme1["contour"]["pointN"] = 42
    tables, _ = export([(frame(1, 0), [("default", document(xtreme1, box("t2")))])])
    by_points = {a["num_lidar_pts"]: a for a in tables["sample_annotation"].values()}
    annotation = by_points[42]
    assert annotation["translation"] == [10, 2, -0.75], "the LiDAR frame: identity poses"
    assert annotation["size"] == [2, 4, 1.5]
    assert annotation["rotation"] == pytest.approx([math.sqrt(0.5), 0, 0, math.sqrt(0.5)])
    assert (annotation["visibility_token"], annotation["attribute_tokens"]) == ("", [])
    assert annotation["num_radar_pts"] == 0
    assert NOT_COUNTED in by_points, "no pointN: not counted, rather than 0 points"
    (pose,) = tables["ego_pose"].values()
    (lidar,) = tables["calibrated_sensor"].values()
    assert pose["rotation"] == lidar["rotation"] == [1, 0, 0, 0]
    assert pose["translation"] == lidar["translation"] == [0, 0, 0]


def test_tracks_are_per_scene_per_source_and_per_class() -> None:
    truck = box("t1", classId="truck")
    frames = [
        (frame(1, 0), [("default", document(box("t1"))), ("model", document(box("t1")))]),
        (frame(1, 1), [("default", document(truck))]),
        (frame(2, 0), [("default", document(box("t1")))]),
    ]
    tables, _ = export(frames)
    assert len(tables["instance"]) == 4
    assert {i["nbr_annotations"] for i in tables["instance"].values()} == {1}


def test_what_nuscenes_cannot_hold_is_skipped_or_reported_with_its_reason() -> None:
    polygon = {"id": "p1", "type": "POLYGON", "points": [{"x": 0, "y": 0}] * 3}
    unclassed = {**box("t3"), "id": "u1", "classId": None}
    tilted = {**box("t4"), "id": "r1"}
    tilted["contour"] = {**tilted["contour"], "rotation": [0.1, 0, 0]}
    described = {**box("t5"), "id": "a1", "attributes": {"moving": True}}
    twin = {**box("t6"), "id": "d1"}
    again = {**box("t6"), "id": "d2"}
    objects = document(box("t6"), polygon, unclassed, tilted, described, twin, again, box("t6"))
    frames = [(frame(1, 0), [("default", objects)])]
    tables, (outcome,) = export(frames)
    skipped = {s.object_id: (s.reason, s.unsupported_type) for s in outcome.skipped}
    assert skipped["p1"] == ("nuScenes annotates 3D boxes", True)
    assert skipped["u1"][0].startswith("the object has no class")
    assert skipped["box-t6"][0].startswith("a second object of this id")
    lossy = {s.object_id: s.reason for s in outcome.lossy}
    assert lossy["r1"].startswith("roll and pitch left out")
    assert lossy["a1"].startswith("attributes left out")
    assert lossy["d1"].startswith("track t6 has another box in this frame")
    assert lossy["d2"].startswith("track t6 has another box in this frame")
    assert outcome.exported == len(tables["sample_annotation"]) == 5
    assert len(tables["instance"]) == 5, "each second box of t6 is an instance of its own"


def test_classes_map_to_categories_and_mapped_ones_come_first() -> None:
    xtreme1 = {**box("t2"), "classId": 4555, "className": "pedestrian"}
    frames = [(frame(1, 0), [("default", document({**box("t1"), "classId": "bus"}, xtreme1,
                                                  box("t3")))])]  # fmt: skip
    tables, _ = export(frames, {"car": "vehicle.car", "pedestrian": "human.pedestrian.adult"})
    categories = sorted(tables["category"].values(), key=lambda c: c["index"])
    assert [c["name"] for c in categories] == ["vehicle.car", "human.pedestrian.adult", "bus"]
    by_name = {c["name"]: c["token"] for c in categories}
    assert by_name["vehicle.car"] == token("category", "vehicle.car")
    used = {i["category_token"] for i in tables["instance"].values()}
    assert used == set(by_name.values())


def test_calibrated_cameras_are_sample_data_of_their_own_sensor() -> None:
    cameras = (FrameCamera("camera_image_0", "scene_1/camera_image_0/0.jpg", CAMERA),
               FrameCamera("camera_image_1", "scene_1/camera_image_1/0.jpg"))  # fmt: skip
    frames = [(frame(1, i, cameras=cameras), []) for i in range(2)]
    frames.append((frame(2, 0, cameras=cameras), []))
    tables, _ = export(frames)
    channels = {s["channel"]: s for s in tables["sensor"].values()}
    assert {name: s["modality"] for name, s in channels.items()} == {
        "LIDAR_TOP": "lidar", "camera_image_0": "camera",
    }, "a camera without calibration has no sample_data"  # fmt: skip
    images = walk(tables["sample_data"], token("sample_data", 100, "camera_image_0"))
    assert [(d["width"], d["height"], d["fileformat"]) for d in images] == [(1242, 375, "jpg")] * 2
    sensor = tables["calibrated_sensor"][images[0]["calibrated_sensor_token"]]
    assert sensor["sensor_token"] == channels["camera_image_0"]["token"]
    assert sensor["camera_intrinsic"] == [[700, 0, 600], [0, 700, 180], [0, 0, 1]]
    assert sensor["rotation"] == [0.5, -0.5, 0.5, -0.5]
    assert len(tables["calibrated_sensor"]) == 3, "the LiDAR's, and the camera's per scene"


def test_the_same_frames_give_the_same_bytes() -> None:
    def run() -> list[bytes]:
        writer = NuScenesWriter(io.BytesIO, {"car": "vehicle.car"})
        for i in range(3):
            writer.add(frame(1, i), [("default", document(box("t1"), box(None)))])
        return [body.getvalue() for _, body in writer.close()]  # type: ignore[union-attr]

    assert run() == run()


def test_memory_holds_open_tracks_not_annotations() -> None:
    """2,000 frames of 25 boxes (20 tracks that run the whole scene, 5 untracked): 50,000
    annotations, some 25 MB of tables, written to files while one record per track waits."""
    objects = [box(f"t{n}") for n in range(20)] + [{**box(None), "id": f"u{n}"} for n in range(5)]
    boxes = document(*objects)
    with tempfile.TemporaryDirectory() as folder:
        spools: list[Any] = []

        def spool() -> Any:
            spools.append(tempfile.TemporaryFile(dir=folder))  # noqa: SIM115 - closed below
            return spools[-1]

        tracemalloc.start()
        try:
            writer = NuScenesWriter(spool)
            for i in range(2000):
                writer.add(frame(1, i), [("default", boxes)])
            entries = writer.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        written = sum(body.tell() for _, body in entries)  # type: ignore[union-attr]
        for file in spools:
            file.close()
    assert written > 20 * 2**20
    assert peak < 2 * 2**20, f"peak {peak} bytes for {written} bytes of tables"
