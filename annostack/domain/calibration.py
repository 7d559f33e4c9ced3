"""Camera calibration of a frame: intrinsics, extrinsics (LiDAR to camera), image size.

One model (`CameraCalibration`) read from the two sources annostack imports:

* **Xtreme1** `camera_config/<stem>.json`. Its shapes, as Xtreme1's own pc-tool reads them
  (`frontend/pc-tool/docs/camera_config.md`, `translateCameraConfig` in
  `pc-editor/utils/common.ts`): the file is a list with one config per camera, in the order of
  the `camera_image_K` folders, or an object keyed by view name ending in the camera number
  (`"3d_img0"`); one bare config is one camera. Each config has `cameraInternal` or
  `camera_internal` `{fx, fy, cx, cy}`, `cameraExternal` or `camera_external` as 16 numbers,
  `rowMajor` (default true), `width`, `height`. Xtreme1 transposes the matrix when `rowMajor` is
  false *or* when it looks column-major (elements 3, 7, 11 zero and one of 12-14 not): we do
  the same, so a scene projects the same in both tools.
* **KITTI** calib files (`calib/<stem>.txt` of the object layout; `calib_cam_to_cam.txt` and
  `calib_velo_to_cam.txt` of a raw drive). Camera N's projection is `P_N = K [I | t]`, so the
  LiDAR-to-camera extrinsics are `[I | K^-1 p4] . R_rect . Tr_velo_to_cam` and the intrinsics
  are K's. The files' lines are read by the one KITTI calib reader (`domain.kitti_calib`,
  which also takes the tracking benchmark's names); this module only builds cameras from them.

A config or file that cannot be read raises `Invalid` (the domain's 422), saying what is wrong.

Extrinsics are always stored row-major, with last row 0 0 0 1 (anything else is refused: it
is not a rigid transform, and the editor would project nonsense).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import Field

from annostack.domain.errors import Invalid
from annostack.domain.kitti_calib import CalibEntries, matrix
from annostack.domain.models import CamelModel

Matrix = list[list[float]]
COLUMN_MAJOR_HINT = (3, 7, 11)  # zero in a column-major matrix (the bottom row's 0 0 0)
TRANSLATION_IN_COLUMN_MAJOR = (12, 13, 14)
LAST_ROW = (0.0, 0.0, 0.0, 1.0)
TOLERANCE = 1e-6
CAMERA_NUMBER = re.compile(r"([0-9]+)$")


class Intrinsics(CamelModel):
    fx: float = Field(gt=0, allow_inf_nan=False)
    fy: float = Field(gt=0, allow_inf_nan=False)
    cx: float = Field(allow_inf_nan=False)
    cy: float = Field(allow_inf_nan=False)


class CameraCalibration(CamelModel):
    """One camera of a frame: how a LiDAR point lands on its image."""

    intrinsics: Intrinsics
    extrinsics: list[float] = Field(
        min_length=16, max_length=16, description="LiDAR to camera, 4x4 row-major."
    )
    width: int | None = Field(default=None, gt=0, description="Image width, pixels.")
    height: int | None = Field(default=None, gt=0, description="Image height, pixels.")


@dataclass(frozen=True)
class FrameCamera:
    """One camera image of a frame, as an export sees it."""

    camera: str  # its folder: camera_image_0, image_2, image_02
    file_name: str  # the image item's name in the dataset
    calibration: CameraCalibration | None = None  # None: the frame has no config for it


# -- Xtreme1 ------------------------------------------------------------------------------------


def parse_xtreme1_config(document: object) -> list[CameraCalibration]:
    """The cameras of one `camera_config/<stem>.json` (parsed JSON), in camera order."""
    if isinstance(document, list):
        return [_xtreme1_camera(config, f"camera {index}") for index, config in enumerate(document)]
    if isinstance(document, Mapping) and _is_camera(document):
        return [_xtreme1_camera(document, "camera 0")]
    if isinstance(document, Mapping):
        return [_xtreme1_camera(document[view], view) for view in _views_in_order(document)]
    raise Invalid("a camera config is a list of cameras or an object of them")


def _is_camera(document: Mapping[str, object]) -> bool:
    return any(key in document for key in ("cameraInternal", "camera_internal"))


def _views_in_order(document: Mapping[str, object]) -> list[str]:
    numbered = {}
    for view in document:
        found = CAMERA_NUMBER.search(str(view))
        if found is None:
            raise Invalid(f"view {view!r} does not end in its camera number")
        numbered[int(found.group(1))] = str(view)
    return [numbered[number] for number in sorted(numbered)]


def _xtreme1_camera(config: object, where: str) -> CameraCalibration:
    if not isinstance(config, Mapping):
        raise Invalid(f"{where}: not an object")
    internal = config.get("cameraInternal", config.get("camera_internal"))
    external = config.get("cameraExternal", config.get("camera_external"))
    if not isinstance(internal, Mapping):
        raise Invalid(f"{where}: cameraInternal (or camera_internal) is missing")
    flat = _numbers(external, 16, f"{where}: cameraExternal (or camera_external)")
    row_major = config.get("rowMajor", True)
    if not isinstance(row_major, bool):
        raise Invalid(f"{where}: rowMajor must be true or false")
    if row_major is False or _looks_column_major(flat):
        flat = _transposed(flat)
    return _calibration(
        where,
        {key: internal.get(key) for key in ("fx", "fy", "cx", "cy")},
        flat,
        config.get("width"),
        config.get("height"),
    )


def _looks_column_major(flat: Sequence[float]) -> bool:
    return all(flat[i] == 0 for i in COLUMN_MAJOR_HINT) and any(
        flat[i] for i in TRANSLATION_IN_COLUMN_MAJOR
    )


def _transposed(flat: Sequence[float]) -> list[float]:
    return [flat[column * 4 + row] for row in range(4) for column in range(4)]


def _numbers(value: object, count: int, what: str) -> list[float]:
    if not isinstance(value, list) or len(value) != count:
        raise Invalid(f"{what} must be a list of {count} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise Invalid(f"{what} must hold numbers only")
    numbers = [float(v) for v in value]
    if not all(math.isfinite(v) for v in numbers):
        raise Invalid(f"{what} must be finite")
    return numbers


def _calibration(
    where: str, intrinsics: Mapping[str, object], extrinsics: list[float], width: object,
    height: object,
) -> CameraCalibration:  # fmt: skip
    if any(
        abs(got - want) > TOLERANCE for got, want in zip(extrinsics[12:], LAST_ROW, strict=True)
    ):
        raise Invalid(
            f"{where}: the extrinsic matrix is not a rigid transform (its last row must be "
            "0 0 0 1, in row-major order; say rowMajor: false for column-major)"
        )
    try:
        return CameraCalibration.model_validate(
            {"intrinsics": intrinsics, "extrinsics": extrinsics, "width": width, "height": height}
        )
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise Invalid(f"{where}: {_first_problem(error)}") from None


def _first_problem(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if errors is None:
        return str(error)
    first = errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


# -- KITTI --------------------------------------------------------------------------------------


def _homogeneous(given: Matrix) -> Matrix:
    """A 3x3 or 3x4 matrix as 4x4."""
    rows = [[*row, *([0.0] * (4 - len(row)))] for row in given]
    return [*rows, [0.0, 0.0, 0.0, 1.0]]


def _product(a: Matrix, b: Matrix) -> Matrix:
    return [[sum(a[i][k] * b[k][j] for k in range(4)) for j in range(4)] for i in range(4)]


def _from_projection(projection: Matrix, lidar_to_rectified: Matrix) -> CameraCalibration:
    fx, cx, fy, cy = projection[0][0], projection[0][2], projection[1][1], projection[1][2]
    if fx <= 0 or fy <= 0:
        raise Invalid("the projection matrix has no positive focal length")
    # P = K [I | t]: t = K^-1 p4 (K upper triangular, no skew in KITTI's rectified cameras).
    tz = projection[2][3]
    ty = (projection[1][3] - cy * tz) / fy
    tx = (projection[0][3] - cx * tz) / fx
    offset = [[1.0, 0, 0, tx], [0, 1.0, 0, ty], [0, 0, 1.0, tz], [0, 0, 0, 1.0]]
    extrinsics = _product(offset, lidar_to_rectified)
    return CameraCalibration(
        intrinsics=Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy),
        extrinsics=[value for row in extrinsics for value in row],
    )


def kitti_object_camera(entries: CalibEntries, camera: int = 2) -> CameraCalibration:
    """Camera `camera` of a KITTI object or tracking calib file (P2, R0_rect, Tr_velo_to_cam)."""
    projection = matrix(
        entries, f"P{camera}", 3, 4
    )  # first: the camera asked for is the likeliest gap
    rectify = _homogeneous(matrix(entries, "R0_rect", 3, 3))
    velo_to_cam = _homogeneous(matrix(entries, "Tr_velo_to_cam", 3, 4))
    return _from_projection(projection, _product(rectify, velo_to_cam))


def kitti_raw_camera(
    cam_to_cam: CalibEntries, velo_to_cam: CalibEntries, camera: int
) -> CameraCalibration:
    """Camera `camera` (0-3) of a KITTI raw drive, with its rectified image size."""
    rotation, translation = matrix(velo_to_cam, "R", 3, 3), matrix(velo_to_cam, "T", 3, 1)
    lidar = _homogeneous([[*rotation[row], translation[row][0]] for row in range(3)])
    rectify = _homogeneous(matrix(cam_to_cam, "R_rect_00", 3, 3))
    calibration = _from_projection(
        matrix(cam_to_cam, f"P_rect_{camera:02d}", 3, 4), _product(rectify, lidar)
    )
    size = cam_to_cam.get(f"S_rect_{camera:02d}")
    if size is None or len(size.values) != 2:  # the size is a bonus: the camera works without it
        return calibration
    width, height = size.values
    return calibration.model_copy(update={"width": round(width), "height": round(height)})
