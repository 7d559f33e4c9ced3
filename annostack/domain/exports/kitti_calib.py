"""KITTI calibration files (`calib/<frame>.txt` of the 3D object benchmark), read and written.

A file is one matrix per line, `name: v1 v2 ...`, row-major, as the devkit describes:

    P0..P3           3x4  projection of rectified camera 0 coordinates into camera i's image
    R0_rect          3x3  rectifying rotation of camera 0
    Tr_velo_to_cam   3x4  [R|t] from the Velodyne (LiDAR) frame to camera 0
    Tr_imu_to_velo   3x4  [R|t] from the IMU to the Velodyne frame

A LiDAR point reaches the left colour image (image_2) as
``x = P2 · R0_rect · Tr_velo_to_cam · y`` (R0_rect and Tr padded to 4x4 with a 1). KITTI
labels live in the rectified camera 0 frame: x right, y down, z forward.

Lines are read by the one KITTI calib reader (`domain.kitti_calib`), so the tracking
benchmark's names (`R_rect`, `Tr_velo_cam`, `Tr_imu_velo`, separated by a space instead of
`: `) and a raw drive's `calib_time` are read too. Writing always gives all seven lines in the
devkit's order and `%.12e` format, because common readers (OpenPCDet's `get_calib_from_file`)
take them by line number: a matrix annostack does not have is written as P2 (P0, P1, P3) or
the identity (Tr_imu_to_velo), never left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from annostack.domain.errors import Invalid
from annostack.domain.kitti_calib import CalibEntries, matrix, read_calib

Matrix = npt.NDArray[np.float64]

SHAPES: dict[str, tuple[int, int]] = {
    "P0": (3, 4),
    "P1": (3, 4),
    "P2": (3, 4),
    "P3": (3, 4),
    "R0_rect": (3, 3),
    "Tr_velo_to_cam": (3, 4),
    "Tr_imu_to_velo": (3, 4),
}
REQUIRED = ("P2", "R0_rect", "Tr_velo_to_cam")
IDENTITY_3X4 = np.hstack([np.eye(3), np.zeros((3, 1))])


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare matrices explicitly
class KittiCalibration:
    """The matrices of one frame; P0, P1, P3 and Tr_imu_to_velo only if the file had them."""

    p2: Matrix
    r0_rect: Matrix
    tr_velo_to_cam: Matrix
    others: dict[str, Matrix] = field(default_factory=dict)  # P0, P1, P3, Tr_imu_to_velo

    @property
    def lidar_to_rect(self) -> Matrix:
        """4x4: LiDAR frame to rectified camera 0 frame."""
        return _pad(self.r0_rect) @ _pad(self.tr_velo_to_cam)

    @property
    def rotation(self) -> Matrix:
        """3x3: how a direction in the LiDAR frame turns into the rectified camera frame."""
        return self.lidar_to_rect[:3, :3]

    def to_rect(self, points: Matrix) -> Matrix:
        """Nx3 LiDAR points in the rectified camera frame."""
        return _apply(self.lidar_to_rect, points)

    def to_lidar(self, points: Matrix) -> Matrix:
        """Nx3 rectified camera points in the LiDAR frame (the exact inverse of to_rect)."""
        return _apply(np.asarray(np.linalg.inv(self.lidar_to_rect), dtype=np.float64), points)

    def to_image(self, points: Matrix) -> Matrix:
        """Nx3 rectified camera points as Nx2 pixel coordinates of image_2 (z must be > 0)."""
        projected = np.hstack([points, np.ones((len(points), 1))]) @ self.p2.T
        return projected[:, :2] / projected[:, 2:3]


def calibration_from_camera(intrinsics: Matrix, lidar_to_camera: Matrix) -> KittiCalibration:
    """A frame's camera (3x3 K, 3x4 or 4x4 LiDAR-to-camera extrinsics) as KITTI matrices.

    The camera is taken as already rectified: P2 = [K|0], R0_rect = I.
    """
    p2 = np.hstack([np.asarray(intrinsics, dtype=np.float64), np.zeros((3, 1))])
    extrinsics = np.asarray(lidar_to_camera, dtype=np.float64)[:3, :4]
    return KittiCalibration(p2=p2, r0_rect=np.eye(3), tr_velo_to_cam=extrinsics)


def parse_calibration(text: str) -> KittiCalibration:
    """A calib file's matrices; Invalid naming the line or matrix that is wrong."""
    return calibration_of(read_calib(text))


def calibration_of(entries: CalibEntries) -> KittiCalibration:
    """The matrices of a calib file already read (a scene import reads each file once)."""
    missing = [name for name in REQUIRED if name not in entries]
    if missing:
        raise Invalid(f"calibration has no {', '.join(missing)}")
    # Other entries (a raw drive's R_rect_00, ...) are not matrices of this layout.
    matrices = {
        name: np.array(matrix(entries, name, *shape), dtype=np.float64)
        for name, shape in SHAPES.items()
        if name in entries
    }
    p2, r0, tr = (matrices.pop(name) for name in REQUIRED)
    return KittiCalibration(p2=p2, r0_rect=r0, tr_velo_to_cam=tr, others=matrices)


def format_calibration(calibration: KittiCalibration) -> str:
    """The seven lines of a KITTI object calib file (see the module docstring)."""
    known = {
        **calibration.others,
        "P2": calibration.p2,
        "R0_rect": calibration.r0_rect,
        "Tr_velo_to_cam": calibration.tr_velo_to_cam,
    }
    stand_in = {"P0": calibration.p2, "P1": calibration.p2, "P3": calibration.p2}
    stand_in["Tr_imu_to_velo"] = IDENTITY_3X4
    lines = []
    for name in SHAPES:
        matrix = known[name] if name in known else stand_in[name]
        lines.append(f"{name}: " + " ".join(f"{value:.12e}" for value in np.ravel(matrix)))
    return "\n".join(lines) + "\n"


def _pad(matrix: Matrix) -> Matrix:
    padded = np.eye(4)
    padded[: matrix.shape[0], : matrix.shape[1]] = matrix
    return padded


def _apply(transform: Matrix, points: Matrix) -> Matrix:
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    return (np.hstack([points, np.ones((len(points), 1))]) @ transform.T)[:, :3]
