"""Scene planning, camera calibration and result conversion: every layout and every bad input."""

from __future__ import annotations

import math

import orjson
import pytest

from annostack.domain.annotations import AnnotationDocument
from annostack.domain.calibration import (
    kitti_object_camera,
    kitti_raw_camera,
    parse_xtreme1_config,
)
from annostack.domain.errors import Invalid
from annostack.domain.exports.imported import ResultError
from annostack.domain.exports.xtreme1 import UNCONVERTED, import_result, result_to_xtreme1
from annostack.domain.kitti_calib import read_calib
from annostack.domain.scenes import (
    Layout,
    PlannedScene,
    Problem,
    calibrations_of,
    natural_key,
    plan_scenes,
)
from annostack.services.scenes import SceneImport

# A config as Xtreme1's docs show it (frontend/pc-tool/docs/camera_config.md): column-major.
EXTERNAL_COLUMN_MAJOR = [
    -0.72, -0.04, -0.69, 0,
    0.69, 0.03, -0.72, 0,
    0.05, -0.99, 0.004, 0,
    0.0093, 1.658, -1.02, 1,
]  # fmt: skip
EXTERNAL_ROW_MAJOR = [
    -0.72, 0.69, 0.05, 0.0093,
    -0.04, 0.03, -0.99, 1.658,
    -0.69, -0.72, 0.004, -1.02,
    0, 0, 0, 1,
]  # fmt: skip
INTERNAL = {"fx": 933.4667, "fy": 934.6754, "cx": 896.4692, "cy": 507.3557}


def camera(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "cameraInternal": INTERNAL,
        "cameraExternal": EXTERNAL_ROW_MAJOR,
        "width": 1920,
        "height": 1080,
    }
    return {**config, **overrides}


# -- planning: layouts ---------------------------------------------------------------------------


def xtreme1_names(scene: str, stems: list[str], cameras: int = 2) -> list[str]:
    names = []
    for stem in stems:
        names.append(f"{scene}lidar_point_cloud_0/{stem}.pcd")
        names += [f"{scene}camera_image_{k}/{stem}.jpg" for k in range(cameras)]
        names += [f"{scene}camera_config/{stem}.json", f"{scene}result/{stem}.json"]
    return names


def test_xtreme1_scenes_and_frames_are_in_natural_order() -> None:
    names = xtreme1_names("export/scene_10/", ["10", "2", "1"])
    names += xtreme1_names("export/scene_2/", ["0"], cameras=0)
    plan = plan_scenes(reversed(names))
    assert plan.problems == ()
    assert [s.name for s in plan.scenes] == ["export/scene_2", "export/scene_10"]
    frames = plan.scenes[1].frames
    assert [(f.index, f.stem) for f in frames] == [(0, "1"), (1, "2"), (2, "10")]
    assert frames[2].point_cloud == "export/scene_10/lidar_point_cloud_0/10.pcd"
    assert [i.camera for i in frames[2].images] == ["camera_image_0", "camera_image_1"]
    assert frames[2].calibration == "export/scene_10/camera_config/10.json"
    assert frames[2].result == "export/scene_10/result/10.json"
    assert plan.scenes[0].layout is Layout.XTREME1


@pytest.mark.parametrize(("root", "scene"), [("", "scene"), ("drive-7/", "drive-7")])
def test_a_single_scene_without_scene_folders(root: str, scene: str) -> None:
    plan = plan_scenes([*xtreme1_names(root, ["a", "b"]), f"{root}README.md"])
    assert [s.name for s in plan.scenes] == [scene]
    assert [f.stem for f in plan.scenes[0].frames] == ["a", "b"]
    assert plan.problems == ()


def test_natural_key_puts_2_before_10() -> None:
    stems = ["frame10", "frame2", "frame1a", "frame1"]
    assert sorted(stems, key=natural_key) == ["frame1", "frame1a", "frame2", "frame10"]


def test_kitti_object_layout() -> None:
    names = [
        f"training/{folder}/{stem}{suffix}"
        for stem in ("000010", "000002")
        for folder, suffix in (("velodyne", ".bin"), ("image_2", ".png"), ("image_3", ".png"),
                               ("calib", ".txt"), ("label_2", ".txt"))
    ]  # fmt: skip
    plan = plan_scenes(names)
    (scene,) = plan.scenes
    assert (scene.name, scene.layout) == ("training", Layout.KITTI_OBJECT)
    assert [f.stem for f in scene.frames] == ["000002", "000010"]
    frame = scene.frames[0]
    assert [i.camera for i in frame.images] == ["image_2", "image_3"]
    assert frame.calibration == "training/calib/000002.txt"
    assert frame.label == "training/label_2/000002.txt"
    assert frame.result is None


def test_kitti_raw_layout_with_calibration_at_the_date_level() -> None:
    drive = "2011_09_26/2011_09_26_drive_0001_sync"
    names = [
        "2011_09_26/calib_cam_to_cam.txt",
        "2011_09_26/calib_velo_to_cam.txt",
        f"{drive}/velodyne_points/timestamps.txt",
        *(f"{drive}/velodyne_points/data/{i:010d}.bin" for i in (11, 0, 2)),
        *(f"{drive}/image_02/data/{i:010d}.png" for i in (0, 2, 11)),
    ]
    (scene,) = plan_scenes(names).scenes
    assert (scene.name, scene.layout) == (drive, Layout.KITTI_RAW)
    assert [f.stem for f in scene.frames] == ["0000000000", "0000000002", "0000000011"]
    assert scene.calibration == (
        "2011_09_26/calib_cam_to_cam.txt",
        "2011_09_26/calib_velo_to_cam.txt",
    )


# -- planning: bad input, each reported and the rest kept ---------------------------------------


def reasons(problems: tuple[Problem, ...]) -> dict[str, str]:
    return {problem.name: problem.reason for problem in problems}


def test_a_frame_without_a_point_cloud_is_reported_and_the_others_kept() -> None:
    names = [*xtreme1_names("", ["1"]), "camera_image_0/2.jpg", "camera_config/2.json"]
    plan = plan_scenes(names)
    assert [f.stem for f in plan.scenes[0].frames] == ["1"]
    found = reasons(plan.problems)
    assert set(found) == {"camera_image_0/2.jpg", "camera_config/2.json"}
    assert "frame '2' has no point cloud" in found["camera_image_0/2.jpg"]


def test_a_result_for_a_missing_frame_is_reported() -> None:
    plan = plan_scenes([*xtreme1_names("", ["1"]), "result/9.json"])
    assert reasons(plan.problems) == {
        "result/9.json": "a result for frame '9', which has no point cloud: not imported"
    }
    assert len(plan.scenes[0].frames) == 1


def test_duplicate_stems_are_all_left_out_and_reported() -> None:
    names = [*xtreme1_names("", ["1", "2"]), "lidar_point_cloud_0/2.bin", "camera_image_0/1.png"]
    plan = plan_scenes(names)
    found = reasons(plan.problems)
    assert "lidar_point_cloud_0/2.bin" in found and "lidar_point_cloud_0/2.pcd" in found
    assert "duplicate stem '2'" in found["lidar_point_cloud_0/2.pcd"]
    assert "camera_image_0/1.png" in found and "camera_image_0/1.jpg" in found
    (frame,) = plan.scenes[0].frames  # frame 2 lost its cloud; frame 1 its first camera
    assert frame.stem == "1"
    assert [i.camera for i in frame.images] == ["camera_image_1"]
    assert "has no point cloud" in found["camera_image_0/2.jpg"]


def test_names_that_are_not_utf8_are_reported() -> None:
    from_tar = b"lidar_point_cloud_0/\xff.pcd".decode("utf-8", "surrogateescape")
    plan = plan_scenes([*xtreme1_names("", ["1"]), from_tar, b"camera_image_0/\xfe.jpg"])
    assert len(plan.problems) == 2
    assert all("not UTF-8" in p.reason for p in plan.problems)
    assert len(plan.scenes[0].frames) == 1


def test_a_second_lidar_is_reported() -> None:
    plan = plan_scenes([*xtreme1_names("", ["1"]), "lidar_point_cloud_1/1.pcd"])
    assert "a frame holds one" in reasons(plan.problems)["lidar_point_cloud_1/1.pcd"]
    assert plan.scenes[0].frames[0].point_cloud == "lidar_point_cloud_0/1.pcd"


def test_files_of_no_layout_are_not_problems() -> None:
    plan = plan_scenes(["notes.txt", "photos/a.jpg", "camera_config\n/1.json"])
    assert plan == plan_scenes([])


# -- Xtreme1 camera configs ---------------------------------------------------------------------


def test_both_shapes_give_the_same_calibration() -> None:
    camel = parse_xtreme1_config([camera()])
    snake = parse_xtreme1_config(
        [{"camera_internal": INTERNAL, "camera_external": EXTERNAL_ROW_MAJOR,
          "width": 1920, "height": 1080}]
    )  # fmt: skip
    assert camel == snake
    assert camel[0].intrinsics.fx == INTERNAL["fx"]
    assert (camel[0].width, camel[0].height) == (1920, 1080)


def test_column_major_is_stored_row_major() -> None:
    declared = parse_xtreme1_config([camera(cameraExternal=EXTERNAL_COLUMN_MAJOR, rowMajor=False)])
    # Xtreme1 also transposes a matrix that looks column-major without the flag.
    detected = parse_xtreme1_config([camera(cameraExternal=EXTERNAL_COLUMN_MAJOR)])
    assert declared[0].extrinsics == EXTERNAL_ROW_MAJOR
    assert detected[0].extrinsics == EXTERNAL_ROW_MAJOR


def test_row_major_false_on_a_pure_rotation_transposes_it() -> None:
    rotation = [0, -1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    (parsed,) = parse_xtreme1_config([camera(cameraExternal=rotation, rowMajor=False)])
    assert parsed.extrinsics[:3] == [0, 1, 0]


def test_an_object_of_views_is_read_in_camera_order() -> None:
    config = {"3d_img1": camera(width=640), "3d_img0": camera(width=1920)}
    assert [c.width for c in parse_xtreme1_config(config)] == [1920, 640]
    assert parse_xtreme1_config(camera())[0].width == 1920  # one bare camera


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cameraExternal": EXTERNAL_ROW_MAJOR}, "cameraInternal"),
        (camera(cameraExternal=EXTERNAL_ROW_MAJOR[:15]), "16 numbers"),
        (camera(cameraExternal=[*EXTERNAL_ROW_MAJOR[:15], "1"]), "numbers only"),
        (camera(cameraExternal=[*EXTERNAL_ROW_MAJOR[:15], True]), "numbers only"),
        (camera(cameraExternal=[2.0] * 16), "not a rigid transform"),
        (camera(cameraInternal={**INTERNAL, "fx": 0}), "fx"),
        (camera(cameraInternal={**INTERNAL, "cy": None}), "cy"),
        (camera(width=-3), "width"),
        (camera(rowMajor="no"), "rowMajor"),
        ("a string", "list of cameras"),
        ([1], "not an object"),
        ({"front": camera()}, "camera number"),
    ],
)
def test_bad_configs_say_what_is_wrong(config: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_xtreme1_config([config] if isinstance(config, dict) and "front" not in config
                             else config)  # fmt: skip


# -- calibration of planned scenes, read through a callback ---------------------------------------


def scene_with(files: dict[str, bytes], cameras: int = 2) -> tuple[PlannedScene, dict[str, bytes]]:
    (scene,) = plan_scenes([*xtreme1_names("", ["1", "2", "3"], cameras), *files]).scenes
    return scene, files


def test_each_frame_gets_its_cameras_and_a_bad_config_is_only_its_frames_problem() -> None:
    good = orjson.dumps([camera(), camera(width=640)])
    files = {"camera_config/1.json": good, "camera_config/2.json": b"{not json",
             "camera_config/3.json": orjson.dumps([camera()])}  # fmt: skip
    scene, _ = scene_with({})
    found = calibrations_of(scene, files.__getitem__)
    assert set(found[0].cameras) == {"camera_image_0", "camera_image_1"}
    assert found[0].cameras["camera_image_1"].width == 640
    assert found[1].cameras == {}
    assert "not JSON" in found[1].problems[0].reason
    assert set(found[2].cameras) == {"camera_image_0"}  # one config for two images: paired
    assert "describes 1 camera(s)" in found[2].problems[0].reason


def test_a_config_that_is_not_utf8_or_too_large_is_a_problem() -> None:
    scene, _ = scene_with({}, cameras=1)
    files = {"camera_config/1.json": b"\xff\xfe", "camera_config/2.json": b" " * (2**20 + 1),
             "camera_config/3.json": orjson.dumps([camera()])}  # fmt: skip
    found = calibrations_of(scene, files.__getitem__)
    assert [bool(f.problems) for f in found] == [True, True, False]


# -- KITTI calibration ----------------------------------------------------------------------------

KITTI_OBJECT_CALIB = """P0: 700 0 600 0 0 700 180 0 0 0 1 0
P1: 700 0 600 -380 0 700 180 0 0 0 1 0
P2: 700 0 600 42 0 700 180 7 0 0 1 0.5
P3: 700 0 600 -340 0 700 180 2 0 0 1 0.003
R0_rect: 1 0 0 0 1 0 0 0 1
Tr_velo_to_cam: 0 -1 0 0 0 0 -1 -0.08 1 0 0 -0.27
Tr_imu_to_velo: 1 0 0 -0.8 0 1 0 0.3 0 0 1 -0.9
"""


def test_kitti_object_extrinsics_by_hand() -> None:
    parsed = kitti_object_camera(read_calib(KITTI_OBJECT_CALIB), 2)
    assert parsed.intrinsics.model_dump() == {"fx": 700, "fy": 700, "cx": 600, "cy": 180}
    # t = K^-1 (42, 7, 0.5): tz = 0.5, ty = (7 - 180 * 0.5) / 700, tx = (42 - 600 * 0.5) / 700.
    tx, ty, tz = (42 - 300) / 700, (7 - 90) / 700, 0.5
    expected = [0, -1, 0, tx, 0, 0, -1, -0.08 + ty, 1, 0, 0, -0.27 + tz, 0, 0, 0, 1]
    assert all(
        math.isclose(a, b, abs_tol=1e-12) for a, b in zip(parsed.extrinsics, expected, strict=True)
    )
    # A LiDAR point 10 m ahead lands in the image through P2 . R0 . Tr, as KITTI's devkit says.
    x, y, z = 10.0, 1.0, 0.5
    cam = [
        sum(parsed.extrinsics[r * 4 + c] * v for c, v in enumerate((x, y, z, 1))) for r in range(3)
    ]
    u = parsed.intrinsics.fx * cam[0] / cam[2] + parsed.intrinsics.cx
    direct = (700 * -y + 600 * (x - 0.27) + 42) / ((x - 0.27) + 0.5)
    assert math.isclose(u, direct)


def test_kitti_raw_camera_with_its_image_size() -> None:
    cam_to_cam = read_calib(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "S_rect_02: 1.242000e+03 3.750000e+02\n"
        "R_rect_00: 1 0 0 0 1 0 0 0 1\n"
        "P_rect_02: 721.5 0 609.5 44.85 0 721.5 172.8 0.2163 0 0 1 0.002745\n"
    )
    velo_to_cam = read_calib("R: 0 -1 0 0 0 -1 1 0 0\nT: 0 -0.07 -0.27\n")
    parsed = kitti_raw_camera(cam_to_cam, velo_to_cam, 2)
    assert (parsed.width, parsed.height) == (1242, 375)
    assert parsed.extrinsics[12:] == [0, 0, 0, 1]
    assert math.isclose(parsed.extrinsics[11], -0.27 + 0.002745)


@pytest.mark.parametrize(
    "text", ["P2: 1 2 x\n", "P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\n", "P2: nan 0 0 0\n"]
)
def test_bad_kitti_calib_files_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        kitti_object_camera(read_calib(text), 2)


def test_kitti_frames_get_calibration_per_camera_and_raw_drives_per_scene() -> None:
    names = ["velodyne/1.bin", "image_2/1.png", "calib/1.txt", "velodyne/2.bin", "image_2/2.png",
             "calib/2.txt"]  # fmt: skip
    (scene,) = plan_scenes(names).scenes
    files = {"calib/1.txt": KITTI_OBJECT_CALIB.encode(), "calib/2.txt": b"P2: 1 2\n"}
    found = calibrations_of(scene, files.__getitem__)
    assert found[0].cameras["image_2"].intrinsics.fx == 700
    assert found[1].cameras == {} and "must hold" in found[1].problems[0].reason

    raw = ["d/velodyne_points/data/0.bin", "d/image_02/data/0.png", "d/velodyne_points/data/1.bin"]
    (drive,) = plan_scenes(raw).scenes
    missing = calibrations_of(drive, {}.__getitem__)
    assert "calib_cam_to_cam.txt" in missing[0].problems[0].reason and not missing[1].problems


# A raw drive's two files as published (2011_09_26), camera 2 only: dated, colon-separated.
RAW_CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_rect_02: 1.242000e+03 3.750000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
"""  # noqa: E501 - the file's own lines
RAW_VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""  # noqa: E501


def raw_drive() -> PlannedScene:
    names = ["d/calib_cam_to_cam.txt", "d/calib_velo_to_cam.txt", "d/d1/velodyne_points/data/0.bin",
             "d/d1/image_02/data/0.png", "d/d1/velodyne_points/data/1.bin",
             "d/d1/image_02/data/1.png"]  # fmt: skip
    (drive,) = plan_scenes(names).scenes
    return drive


def test_a_dated_raw_drive_gives_every_frame_its_camera() -> None:
    files = {"d/calib_cam_to_cam.txt": RAW_CAM_TO_CAM.encode(),
             "d/calib_velo_to_cam.txt": RAW_VELO_TO_CAM.encode()}  # fmt: skip
    found = calibrations_of(raw_drive(), files.__getitem__)
    assert [f.problems for f in found] == [(), ()]
    camera = found[1].cameras["image_02"]
    assert (camera.intrinsics.fx, camera.width, camera.height) == (721.5377, 1242, 375)


def test_a_bad_line_in_a_raw_drive_is_a_problem_of_that_file_naming_the_line() -> None:
    damaged = RAW_VELO_TO_CAM.replace("-7.631618e-02", "n/a")
    files = {"d/calib_cam_to_cam.txt": RAW_CAM_TO_CAM.encode(),
             "d/calib_velo_to_cam.txt": damaged.encode()}  # fmt: skip
    found = calibrations_of(raw_drive(), files.__getitem__)
    (problem,) = found[0].problems
    assert problem.name == "d/calib_velo_to_cam.txt"
    assert "calibration line 3 (T)" in problem.reason and "'n/a'" in problem.reason
    assert found[0].cameras == found[1].cameras == {} and not found[1].problems


def test_a_tracking_style_calib_file_gives_the_same_camera_as_the_object_one() -> None:
    tracking = (KITTI_OBJECT_CALIB.replace("P2: ", "P2 ").replace("R0_rect: ", "R_rect ")
                .replace("Tr_velo_to_cam: ", "Tr_velo_cam "))  # fmt: skip
    assert kitti_object_camera(read_calib(tracking)) == kitti_object_camera(
        read_calib(KITTI_OBJECT_CALIB)
    )


# -- Xtreme1 results ---------------------------------------------------------------------------

BOX = {
    "id": "a1", "type": "3D_BOX", "classId": 7, "className": "Car", "trackId": "t1",
    "trackName": "1", "classValues": [{"id": "occluded", "value": "no"}],
    "contour": {"center3D": {"x": 1, "y": 2, "z": 0.5}, "size3D": {"x": 4, "y": 2, "z": 1.5},
                "rotation3D": {"x": 0, "y": 0, "z": 1.57}, "pointN": 120, "viewIndex": 0},
    "modelConfidence": 0.9,
}  # fmt: skip
RECT = {"type": "2D_RECT", "classId": 2,
        "contour": {"points": [{"x": 10, "y": 20}, {"x": 50, "y": 20}, {"x": 50, "y": 80},
                               {"x": 10, "y": 80}], "viewIndex": 1}}  # fmt: skip
CUBOID = {"id": "c", "type": "2D_BOX", "contour": {"points": [{"x": 0, "y": 0}] * 8}}
SEGMENT = {"id": "s", "type": "3D_SEGMENT_POINTS", "contour": {"indices": [1, 2, 3]}}


def test_results_convert_with_unknown_fields_kept() -> None:
    body = orjson.dumps({"version": "1.0", "dataId": 5, "objects": [BOX, RECT, SEGMENT]})
    (imported,) = import_result(body, "000002")
    document = orjson.loads(imported.document.body)
    AnnotationDocument.model_validate(document)
    box, rect = document["objects"]
    assert box["contour"]["center"] == [1, 2, 0.5] and box["contour"]["pointN"] == 120
    assert box["className"] == "Car" and box["classValues"] == BOX["classValues"]
    assert box["modelConfidence"] == 0.9 and document["dataId"] == 5
    assert rect["type"] == "RECTANGLE" and rect["id"] == "000002-1"
    assert {k: rect["contour"][k] for k in ("x", "y", "width", "height")} == {
        "x": 10,
        "y": 20,
        "width": 40,
        "height": 60,
    }
    assert document[UNCONVERTED] == [{"index": 2, "object": SEGMENT}]
    assert (imported.source, len(imported.skipped), imported.document.object_count) == (
        "imported",
        1,
        2,
    )


def test_an_imported_result_exports_to_the_same_bytes() -> None:
    result = [{"sourceName": "Ground Truth", "objects": [BOX, RECT, CUBOID, SEGMENT]},
              {"sourceName": "model", "objects": [{**BOX, "type": "3d"}]}]  # fmt: skip
    imported = import_result(orjson.dumps(result), "1")
    assert [i.source for i in imported] == ["imported", "imported-2"]
    assert orjson.loads(imported[0].document.body)["objects"][2]["type"] == "2D_BOX"
    exported, skipped = result_to_xtreme1(orjson.loads(i.document.body) for i in imported)
    assert orjson.dumps(exported) == orjson.dumps(result) and not skipped


def test_a_list_of_results_is_one_document_per_entry() -> None:
    body = orjson.dumps([{"objects": [BOX]}, {"objects": [RECT]}])
    counts = [(i.source, i.document.object_count) for i in import_result(body, "1")]
    assert counts == [("imported", 1), ("imported-2", 1)]


def test_objects_annostack_cannot_hold_are_kept_not_refused() -> None:
    empty = {**BOX, "contour": {"center3D": {}, "size3D": {}, "rotation3D": {}}}
    long_id = {**BOX, "id": "x" * 65}
    body = orjson.dumps({"objects": [empty, long_id, BOX]})
    (imported,) = import_result(body, "1")
    assert imported.document.object_count == 1 and len(imported.skipped) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b'{"objects": NaN}',
        b'"text"',
        b'{"objects": {"a": 1}}',
        b'[{"objects": []}, 3]',
        orjson.dumps({"objects": [{**BOX, "classId": [1]}]}),
    ],
)
def test_a_result_that_cannot_be_imported_says_why(body: bytes) -> None:
    with pytest.raises(ResultError):
        import_result(body, "1")


def test_the_import_summary_fits_a_status_reason() -> None:
    problems = tuple(Problem(f"camera_image_0/{i}.jpg", "x" * 80) for i in range(40))
    text = SceneImport(1, 300, 299, problems).describe()
    assert text.startswith("1 scene(s), 300 frame(s), 299 annotated; 40 problem(s)")
    assert len(text) <= 512
    assert SceneImport(0, 0, 0, ()).describe() == "0 scene(s), 0 frame(s), 0 annotated"
