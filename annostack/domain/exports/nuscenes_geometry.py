"""nuScenes' coordinates of annostack's boxes and cameras: sizes, quaternions, sensor poses.

Conventions, and why:

* **Frames.** nuScenes gives boxes in a global frame, sensors in the ego vehicle's frame and
  the ego vehicle in the global one (`ego_pose`). annostack knows no ego poses: its boxes
  are in the LiDAR frame. So the export writes an identity ego pose per sample and an
  identity calibrated_sensor for LIDAR_TOP, and global = ego = LiDAR: a box's `translation`
  and `rotation` are its LiDAR-frame centre and heading, unchanged.
* **Size** is nuScenes' [width, length, height]; annostack's is (length along the heading,
  width, height). Both put the length along the box's own x axis (the devkit's `Box.corners`
  spans l/2 along x), so only the order changes.
* **Rotation** is a unit quaternion [w, x, y, z] (pyquaternion's order, which the devkit
  reads). annostack's yaw turns about LiDAR +z, 0 along +x, counter-clockwise seen from
  above, as nuScenes' does: yaw becomes [cos(yaw/2), 0, 0, sin(yaw/2)], so yaw = pi/2 is
  [cos(pi/4), 0, 0, sin(pi/4)] and heads along +y. Quaternions are written with w >= 0
  (q and -q are the same rotation; one spelling keeps exports identical).
* **Roll and pitch** are not written: annostack stores three angles but fixes no order in
  which roll and pitch compose with yaw, and a guessed order would tilt boxes without a
  trace. The box is written level and the object reported as exported with loss.
* **Cameras.** annostack's extrinsics take LiDAR points into the camera (x right, y down,
  z forward, as nuScenes' cameras); a calibrated_sensor is the camera's pose in the ego
  (= LiDAR) frame, i.e. the inverse transform. `camera_intrinsic` is K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from annostack.domain.calibration import Intrinsics

IDENTITY = (1.0, 0.0, 0.0, 0.0)  # the quaternion of no rotation, [w, x, y, z]
ORIGIN = (0.0, 0.0, 0.0)


def nuscenes_size(size: Sequence[float]) -> list[float]:
    """annostack's (length, width, height) as nuScenes' [width, length, height]."""
    length, width, height = size
    return [width, length, height]


def yaw_quaternion(yaw: float) -> list[float]:
    """[w, x, y, z] of a turn by `yaw` radians about +z."""
    return _canonical([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def matrix_quaternion(rotation: npt.NDArray[np.floating[Any]]) -> list[float]:
    """[w, x, y, z] of a 3x3 rotation matrix (Shepperd's method: the largest of 4w², 4x²,
    4y², 4z² is found first and divided by, which stays exact where w is near 0)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    largest = int(np.argmax([trace, m[0, 0], m[1, 1], m[2, 2]]))
    if largest == 0:
        s = 2 * math.sqrt(1 + trace)  # 4w
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif largest == 1:
        s = 2 * math.sqrt(1 + m[0, 0] - m[1, 1] - m[2, 2])  # 4x
        q = [(m[2, 1] - m[1, 2]) / s, s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif largest == 2:
        s = 2 * math.sqrt(1 + m[1, 1] - m[0, 0] - m[2, 2])  # 4y
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2 * math.sqrt(1 + m[2, 2] - m[0, 0] - m[1, 1])  # 4z
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4]
    return _canonical([float(value) for value in q])


def _canonical(q: list[float]) -> list[float]:
    """The unit quaternion with w >= 0 (a real calibration's matrix is only nearly a rotation)."""
    norm = math.sqrt(sum(value * value for value in q))
    sign = -1.0 if q[0] < 0 else 1.0
    return [sign * value / norm + 0.0 for value in q]  # + 0.0: no -0.0 in the output


def camera_pose(extrinsics: Sequence[float]) -> tuple[list[float], list[float]]:
    """A camera's translation and rotation in the LiDAR frame, from its LiDAR-to-camera
    extrinsics (4x4 row-major): the inverse transform's."""
    inverse = np.linalg.inv(np.array(extrinsics, dtype=np.float64).reshape(4, 4))
    translation = [float(value) + 0.0 for value in inverse[:3, 3]]
    return translation, matrix_quaternion(inverse[:3, :3])


def camera_intrinsic(intrinsics: Intrinsics) -> list[list[float]]:
    """K, as nuScenes' 3x3 `camera_intrinsic`."""
    k = intrinsics
    return [[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]]
