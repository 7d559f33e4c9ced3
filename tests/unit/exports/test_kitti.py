"""KITTI labels from LiDAR boxes and back, checked against numbers worked out by hand.

The hand-computed frame uses an "identity-ish" calibration: R0_rect = I, P2 a pinhole with
f = 700 px and principal point (600, 180), and the ideal Velodyne-to-camera rotation
(x_cam = -y_velo, y_cam = -z_velo, z_cam = x_velo, no translation).

The real one is sample 000000 of the KITTI object training set: its calib file as published
(the devkit's `%.12e` format, seven lines) and its one label, a pedestrian.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

from annostack.domain.annotations import AnnotationDocument, Box3D, Box3DObject
from annostack.domain.errors import Invalid
from annostack.domain.exports.imported import ResultError
from annostack.domain.exports.kitti import (
    UNCONVERTED,
    KittiLabel,
    box_of_label,
    document_from_labels,
    export_labels,
    import_label_file,
    label_of_box,
    normalise,
    parse_labels,
    rotation_y_of_yaw,
    yaw_of_rotation_y,
)
from annostack.domain.exports.kitti_calib import (
    KittiCalibration,
    calibration_from_camera,
    format_calibration,
    parse_calibration,
)

IDEAL = KittiCalibration(
    p2=np.array([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]]),
    r0_rect=np.eye(3),
    tr_velo_to_cam=np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]),
)
IMAGE = (1242, 375)  # KITTI's image_2 size

# A car 10 m ahead and 2 m to the left, 4 m long, 2 m wide, 1.6 m high, heading straight on.
CAR = Box3D(center=[10.0, 2.0, -1.0], size=[4.0, 2.0, 1.6], rotation=[0.0, 0.0, 0.0])
# Worked out by hand:
#   bottom centre (LiDAR)   (10, 2, -1 - 1.6/2) = (10, 2, -1.8)
#   location (camera)       (-y, -z, x) = (-2.00, 1.80, 10.00)
#   dimensions (h, w, l)    1.60 2.00 4.00
#   rotation_y              -yaw - pi/2 = -1.5708 -> -1.57
#   alpha                   ry - atan2(x, z) = -1.5708 - atan2(-2, 10) = -1.5708 + 0.1974
#                           = -1.3734 -> -1.37
#   corners (camera)        heading (cos ry, 0, -sin ry) = (0, 0, 1): length along z,
#                           z in [8, 12]; width along x, x in [-3, -1]; y in [0.2, 1.8]
#   u = 600 + 700 x/z       min at x=-3, z=8:  600 - 262.5   = 337.50
#                           max at x=-1, z=12: 600 - 58.333  = 541.67
#   v = 180 + 700 y/z       min at y=0.2, z=12: 180 + 11.667 = 191.67
#                           max at y=1.8, z=8:  180 + 157.5  = 337.50
CAR_LINE = "Car 0.00 0 -1.37 337.50 191.67 541.67 337.50 1.60 2.00 4.00 -2.00 1.80 10.00 -1.57"


def document(*objects: dict[str, object]) -> AnnotationDocument:
    return AnnotationDocument.model_validate({"objects": list(objects)})


def imported(text: str, calibration: KittiCalibration) -> list[dict[str, Any]]:
    """The objects of a label file that converts whole."""
    converted, skipped = document_from_labels(text, calibration)
    assert skipped == [] and UNCONVERTED not in converted
    objects: list[dict[str, Any]] = converted["objects"]
    return objects


def box_object(box: Box3D, class_id: object = "Car", **extra: object) -> dict[str, object]:
    return {"id": "b1", "type": "3D_BOX", "classId": class_id, "contour": box.model_dump(),
            **extra}  # fmt: skip


def test_a_hand_computed_box_gives_the_hand_computed_label() -> None:
    frame = export_labels(document(box_object(CAR)), IDEAL, image_size=IMAGE)
    assert frame.label == CAR_LINE + "\n"
    assert (frame.exported, frame.skipped, frame.lossy) == (1, (), ())


def test_truncated_is_the_share_of_the_2d_box_outside_the_image() -> None:
    # In a 500 px wide image the right edge 541.67 is clipped to 499: the box keeps
    # 499 - 337.5 = 161.5 of its 204.17 px width, so 1 - 161.5/204.17 = 0.209 is outside.
    label = label_of_box(CAR, "Car", IDEAL, image_size=(500, 375))
    assert label.bbox[2] == 499
    assert label.line().split()[1] == "0.21"


@pytest.mark.parametrize("yaw", [0.0, math.pi / 6, math.pi / 2, -math.pi / 2, math.pi, -3.0, 2.5])
def test_rotation_y_is_minus_yaw_minus_half_pi_for_the_ideal_rotation(yaw: float) -> None:
    # e.g. yaw = pi/6 (heading 30 degrees left of straight on): ry = -pi/6 - pi/2 = -2.0944.
    ry = rotation_y_of_yaw(yaw, IDEAL)
    assert ry == pytest.approx(normalise(-yaw - math.pi / 2), abs=1e-12)
    assert -math.pi <= ry < math.pi
    assert yaw_of_rotation_y(ry, IDEAL) == pytest.approx(normalise(yaw), abs=1e-12)


def test_a_box_heading_30_degrees_left() -> None:
    box = CAR.model_copy(update={"rotation": [0.0, 0.0, math.pi / 6]})
    label = label_of_box(box, "Car", IDEAL)
    # ry = -pi/6 - pi/2 = -2.0944; alpha = -2.0944 + 0.1974 = -1.8970.
    assert label.line().split()[3] == "-1.90"
    assert label.line().split()[-1] == "-2.09"


# KITTI object training sample 000000, calib/000000.txt and label_2/000000.txt as published.
CALIB_000000 = """\
P0: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 0.000000000000e+00 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 -3.797842000000e+02 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 4.575831000000e+01 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 -3.454157000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 4.981016000000e-03
P3: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02 -3.341081000000e+02 0.000000000000e+00 7.070493000000e+02 1.805066000000e+02 2.330660000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 3.201153000000e-03
R0_rect: 9.999128000000e-01 1.009263000000e-02 -8.511932000000e-03 -1.012729000000e-02 9.999406000000e-01 -4.037671000000e-03 8.470675000000e-03 4.123522000000e-03 9.999556000000e-01
Tr_velo_to_cam: 6.927964000000e-03 -9.999722000000e-01 -2.757829000000e-03 -2.457729000000e-02 -1.162982000000e-03 2.749836000000e-03 -9.999955000000e-01 -6.127237000000e-02 9.999753000000e-01 6.931141000000e-03 -1.143899000000e-03 -3.321029000000e-01
Tr_imu_to_velo: 9.999976000000e-01 7.553071000000e-04 -2.035826000000e-03 -8.086759000000e-01 -7.854027000000e-04 9.998898000000e-01 -1.482298000000e-02 3.195559000000e-01 2.024406000000e-03 1.482454000000e-02 9.998881000000e-01 -7.997231000000e-01
"""  # noqa: E501 - the file's own lines
LABEL_000000 = (
    "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n"
)
REAL = parse_calibration(CALIB_000000)


def test_the_real_calib_file_is_written_back_as_it_was() -> None:
    assert format_calibration(REAL) == CALIB_000000


def test_the_real_pedestrian_comes_in_where_the_lidar_saw_it() -> None:
    (pedestrian,) = imported(LABEL_000000, REAL)
    box = Box3D.model_validate(pedestrian["contour"])
    # By hand with the ideal axis swap: p_cam - t = (1.84 + 0.025, 1.47 + 0.061, 8.41 + 0.332)
    # -> LiDAR bottom (8.74, -1.86, -1.53), centre z + 1.89/2 = -0.59. The calibration's
    # rotations tilt by ~8 mrad, which at 8.7 m moves the bottom by ~7 cm in z: -1.60.
    assert box.center == pytest.approx([8.7314, -1.8559, -1.5997 + 1.89 / 2], abs=1e-4)
    assert box.size == [1.20, 0.48, 1.89]  # l, w, h from KITTI's h, w, l
    # -ry - pi/2 = -1.5808 for an ideal rotation; this calibration's rotation adds 1.5 mrad.
    assert box.rotation[2] == pytest.approx(-1.58232, abs=1e-5)
    assert pedestrian["attributes"] == {"truncated": 0.0, "occluded": 0}
    assert pedestrian["classId"] == "Pedestrian"


def test_the_real_pedestrian_goes_back_out_with_the_same_3d_values() -> None:
    frame = export_labels(document(*imported(LABEL_000000, REAL)), REAL, image_size=IMAGE)
    original, exported = LABEL_000000.split(), frame.label.split()
    assert exported[:3] + exported[8:] == original[:3] + original[8:]
    # alpha is recomputed from the 2-digit location and rotation_y: -0.2054 -> -0.21, where
    # KITTI computed -0.20 before rounding them.
    assert float(exported[3]) == pytest.approx(float(original[3]), abs=0.0101)
    # The 2D box is the projected cuboid (710.44 144.00 820.29 307.59): KITTI's own was
    # drawn around the visible person, a few pixels inside it.
    assert [float(v) for v in exported[4:8]] == pytest.approx([710.44, 144.00, 820.29, 307.59])
    assert np.allclose([float(v) for v in exported[4:8]], [float(v) for v in original[4:8]],
                       atol=10)  # fmt: skip


@pytest.mark.parametrize("calibration", [IDEAL, REAL], ids=["ideal", "000000"])
def test_lidar_to_kitti_and_back_is_exact(calibration: KittiCalibration) -> None:
    rng = np.random.default_rng(15)
    for _ in range(200):
        box = Box3D(
            center=[float(rng.uniform(5, 40)), float(rng.uniform(-8, 8)), -1.0],
            size=[float(rng.uniform(0.5, 5)), float(rng.uniform(0.5, 2.5)), 1.7],
            rotation=[0.0, 0.0, float(rng.uniform(-math.pi, math.pi))],
        )
        back = box_of_label(label_of_box(box, "Car", calibration), calibration)
        assert back.center == pytest.approx(box.center, abs=1e-9)
        assert back.size == pytest.approx(box.size, abs=1e-12)
        assert normalise(back.rotation[2] - box.rotation[2]) == pytest.approx(0, abs=1e-9)


def test_a_kitti_frame_round_trips_through_annostack() -> None:
    text = (
        LABEL_000000
        + "Car 0.00 1 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57\n"
    )
    frame = export_labels(document(*imported(text, REAL)), REAL)
    for original, exported in zip(parse_labels(text), parse_labels(frame.label), strict=True):
        assert (exported.type, exported.truncated, exported.occluded) == (
            original.type, original.truncated, original.occluded)  # fmt: skip
        assert exported.dimensions == original.dimensions
        assert exported.location == original.location
        assert exported.rotation_y == original.rotation_y
        assert exported.alpha == pytest.approx(original.alpha, abs=0.0101)  # as above


def test_dont_care_regions_come_in_as_rectangles_and_go_back_out() -> None:
    line = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"
    (region,) = imported(line, REAL)
    assert region["type"] == "RECTANGLE"
    assert region["contour"] == pytest.approx(
        {"x": 503.89, "y": 169.71, "width": 86.72, "height": 20.42}
    )
    frame = export_labels(document(region), REAL)
    assert frame.label == (
        "DontCare -1.00 -1 -10.00 503.89 169.71 590.61 190.13 -1.00 -1.00 -1.00 "
        "-1000.00 -1000.00 -1000.00 -10.00\n"
    )


def test_objects_kitti_cannot_hold_are_listed_with_the_reason() -> None:
    behind = CAR.model_copy(update={"center": [-10.0, 0.0, -1.0]})
    frame = export_labels(
        document(
            box_object(CAR, "tree") | {"id": "tree"},
            box_object(behind) | {"id": "behind"},
            {"id": "poly", "type": "POLYGON", "points": [{"x": 0, "y": 0}] * 3},
            {
                "id": "rect",
                "type": "RECTANGLE",
                "classId": "Car",
                "contour": {"x": 0, "y": 0, "width": 1, "height": 1},
            },
            box_object(CAR, 7, className="van") | {"id": "mapped"},
        ),
        IDEAL,
    )
    reasons = {skip.object_id: skip.reason for skip in frame.skipped}
    assert "no KITTI type" in reasons["tree"]
    assert "behind the camera" in reasons["behind"]
    assert "3D boxes" in reasons["poly"]
    assert [s.unsupported_type for s in frame.skipped if s.object_id == "poly"] == [True]
    assert "no 3D box" in reasons["rect"]
    assert frame.exported == 1 and frame.label.startswith("Van ")  # className "van"


def test_a_class_mapping_names_the_kitti_type() -> None:
    frame = export_labels(document(box_object(CAR, 3)), IDEAL, classes={"3": "Truck"})
    assert frame.label.startswith("Truck ")


def test_roll_and_pitch_are_reported_as_lost() -> None:
    tilted = CAR.model_copy(update={"rotation": [0.1, 0.0, 0.0]})
    frame = export_labels(document(box_object(tilted)), IDEAL)
    assert frame.exported == 1 and "roll and pitch" in frame.lossy[0].reason


def test_a_box_off_the_image_is_skipped() -> None:
    aside = CAR.model_copy(update={"center": [10.0, 40.0, -1.0]})
    with pytest.raises(Invalid, match="outside the image"):
        label_of_box(aside, "Car", IDEAL, image_size=IMAGE)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("P2: 1 2 3\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: " + "0 " * 12, "3 values"),
        ("P2: " + "1 " * 12 + "\nR0_rect: " + "1 " * 9, "no Tr_velo_to_cam"),
        ("P2: " + "x " * 12, "could not convert"),
        ("P2: " + "1 " * 11 + "x\n", r"line 1 \(P2\): could not convert string to float: 'x'"),
    ],
)
def test_a_bad_calib_file_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_calibration(text)


def test_the_tracking_benchmark_names_are_read_too() -> None:
    text = CALIB_000000.replace("R0_rect:", "R_rect").replace("Tr_velo_to_cam:", "Tr_velo_cam")
    assert np.array_equal(parse_calibration(text).tr_velo_to_cam, REAL.tr_velo_to_cam)


def test_a_raw_drive_style_file_with_its_date_is_read_too() -> None:
    text = "calib_time: 09-Jan-2012 13:57:47\n" + CALIB_000000
    assert format_calibration(parse_calibration(text)) == CALIB_000000


def test_a_camera_of_a_scene_becomes_a_kitti_calibration() -> None:
    intrinsics = IDEAL.p2[:, :3]
    calibration = calibration_from_camera(
        intrinsics, np.vstack([IDEAL.tr_velo_to_cam, [0, 0, 0, 1]])
    )
    assert label_of_box(CAR, "Car", calibration, IMAGE).line() == CAR_LINE
    # Written with stand-ins for what a single camera does not have, line for line.
    lines = format_calibration(calibration).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"]  # fmt: skip


def test_labels_are_parsed_strictly() -> None:
    with pytest.raises(Invalid, match="line 2"):
        parse_labels(LABEL_000000 + "Car 0 0\n")
    label = parse_labels(LABEL_000000)[0]
    assert label == KittiLabel(
        "Pedestrian", 0.0, 0, -0.2, (712.40, 143.00, 810.73, 307.92), (1.89, 0.48, 1.20),
        (1.84, 1.47, 8.41), 0.01,
    )  # fmt: skip


# -- a dataset import's label files -------------------------------------------------------------

# A car crossing 10 m ahead, 2 m to the left: KITTI heading 0 (along camera +x, LiDAR -y).
# By hand, with IDEAL (LiDAR x = z_cam, y = -x_cam, z = -y_cam):
#   bottom (LiDAR)        (10, 2, -1.8); centre z + h/2 = -1.8 + 0.8 = -1.0
#   size (l, w, h)        4.00 2.00 1.60
#   yaw                   heading (cos ry, 0, -sin ry) = (1, 0, 0) cam = (0, -1, 0) LiDAR: -pi/2
# and back out (the 2D box and alpha recomputed, as the export does):
#   alpha                 0 - atan2(-2, 10) = 0.1974 -> 0.20
#   corners (camera)      length along x: x in [-4, 0]; width along z: z in [9, 11];
#                         y in [0.2, 1.8]
#   u = 600 + 700 x/z     min at x=-4, z=9: 600 - 311.11 = 288.89; max at x=0: 600.00
#   v = 180 + 700 y/z     min at y=0.2, z=11: 180 + 12.73 = 192.73; max at y=1.8, z=9: 320.00
CROSSING_LINE = "Car 0.00 0 0.20 288.89 192.73 600.00 320.00 1.60 2.00 4.00 -2.00 1.80 10.00 0.00"
DONT_CARE_LINE = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10"


def test_a_hand_computed_label_comes_in_as_the_hand_computed_box_and_goes_back_out() -> None:
    result = import_label_file(f"{CROSSING_LINE}\n".encode(), IDEAL)
    assert (result.source, result.document.object_count, result.skipped) == ("imported", 1, [])
    stored = AnnotationDocument.model_validate_json(result.document.body)
    (car,) = stored.objects
    assert (car.id, car.class_id, car.type) == ("kitti-1", "Car", "3D_BOX")
    assert isinstance(car, Box3DObject)
    assert car.contour.center == pytest.approx([10.0, 2.0, -1.0], abs=1e-12)
    assert car.contour.size == [4.0, 2.0, 1.6]
    assert car.contour.rotation == pytest.approx([0.0, 0.0, -math.pi / 2], abs=1e-12)
    assert export_labels(stored, IDEAL, image_size=IMAGE).label == CROSSING_LINE + "\n"


def test_each_line_that_does_not_parse_is_kept_whole_and_named_the_rest_imported() -> None:
    body = (
        f"{CROSSING_LINE}\n\n"  # a blank line 2: ids and reasons count the file's lines
        "Car 0 0\n"
        f"{CROSSING_LINE.replace('10.00 0.00', '10.00 x')}\n"
        "Car 0.00 0 0.20 600 192 500 320 -1 -1 -1 -1000 -1000 -1000 -10\n"
        f"{DONT_CARE_LINE}\n"
        f"{CROSSING_LINE} 0.87\n"  # a detection's score
    ).encode()
    result = import_label_file(body, IDEAL)
    stored = orjson.loads(result.document.body)
    AnnotationDocument.model_validate(stored)
    assert [o["id"] for o in stored["objects"]] == ["kitti-1", "kitti-6", "kitti-7"]
    assert [(kept["line"], kept["text"].split()[:2]) for kept in stored[UNCONVERTED]] == [
        (3, ["Car", "0"]), (4, ["Car", "0.00"]), (5, ["Car", "0.00"])]  # fmt: skip
    assert [skip.reason for skip in result.skipped] == [
        "label line 3 has 3 values, not 15",
        "label line 4: could not convert string to float: 'x'",
        "label line 5: the 2D box ends before it starts",
    ]
    assert result.kept_under == UNCONVERTED and result.document.object_count == 3
    region, scored = stored["objects"][1:]
    assert (region["type"], region["classId"]) == ("RECTANGLE", "DontCare")
    assert region["attributes"] == {"truncated": -1, "occluded": -1}
    assert region["kitti"] == {"alpha": -10, "bbox": [503.89, 169.71, 590.61, 190.13],
                               "dimensions": [-1, -1, -1], "location": [-1000, -1000, -1000],
                               "rotationY": -10}  # fmt: skip
    assert scored["kitti"]["score"] == 0.87


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"Car \xff\n", "not UTF-8"), (b" " * (8 * 2**20 + 1), "a label file is at most")],
)
def test_a_label_file_that_cannot_be_imported_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(ResultError, match=reason):
        import_label_file(body, IDEAL)
