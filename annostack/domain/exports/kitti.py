"""KITTI 3D object labels (`label_2/<frame>.txt`) from annostack's LiDAR boxes, and back.

A label line is the devkit's 15 values, written as its `writeLabels.m` does:

    type truncated occluded alpha  left top right bottom  h w l  x y z  rotation_y

Conventions, and why:

* **Frames.** annostack's `Box3D` is in the LiDAR frame: `center` the box's geometric
  centre, `size` (length along the heading, width, height), `rotation` (roll, pitch, yaw)
  with yaw about LiDAR +z, 0 along +x. KITTI's `location` is the centre of the box's
  *bottom* face in the rectified camera 0 frame (x right, y down, z forward): the bottom is
  ``center - (0, 0, h/2)`` in the LiDAR frame, then moved by the calibration.
* **Dimensions** are written in KITTI's order (h, w, l).
* **rotation_y** is KITTI's rotation about camera +y: a box with rotation_y = ry heads along
  ``(cos ry, 0, -sin ry)`` in the camera frame (the devkit's corner formula). The LiDAR
  heading ``(cos yaw, sin yaw, 0)`` is turned into the camera frame by the calibration's
  own rotation (R0_rect · R_velo_to_cam) and ``ry = atan2(-d_z, d_x)``. For the ideal
  Velodyne-to-camera rotation (x_cam = -y_velo, y_cam = -z_velo, z_cam = x_velo) this is
  exactly ``ry = -yaw - pi/2``; a real calibration is a few milliradians off that, which
  the derivation keeps (KITTI sample 000000: 1.5 mrad). Angles are normalised to [-pi, pi).
* **alpha** (observation angle) = ``ry - atan2(x, z)`` of the location, normalised.
* **2D box**: the 8 corners (from the label itself, as KITTI's tools draw them) projected
  with P2, clipped to the image when its size is known (to [0, width-1] x [0, height-1]:
  KITTI's boxes are 0-based pixel coordinates). A box with a corner behind the camera has
  no 2D box and is skipped with that reason, as is one that falls outside the image.
* **truncated** defaults to the fraction of the projected box outside the image (0 when the
  image size is unknown); **occluded** to 0 (fully visible). KITTI's "3 = unknown" would
  be more honest, but its evaluation leaves occluded=3 out of every difficulty level, so an
  export for training would lose every object. An object's `truncated`/`occluded`
  attributes (set by the KITTI import) win over the defaults.
* **Roll and pitch** have no place in KITTI: they are left out and the object is reported
  as exported with loss.
* **Classes**: KITTI types are a fixed set. An object's `classId` (or Xtreme1's `className`)
  is looked up in the caller's class mapping, else used if it is a KITTI type already
  (case-insensitive). Objects with no type, with no 3D box, or of other types, are skipped
  and listed in the report. 2D boxes of class DontCare are written as DontCare regions.

The import (`document_from_labels`; `import_label_file` for a dataset import's
`label_2/<frame>.txt`, with the frame's own `calib/<frame>.txt`) inverts all of this exactly
(to 1e-9: LiDAR -> KITTI -> LiDAR is tested), so a KITTI frame goes in and comes out with the
same 3D values. Line n becomes object `kitti-<n>` (n counts every line of the file, from 1),
of class its type. What the 3D box does not hold is kept on the object, nothing dropped:

* `attributes`: truncated and occluded (the export writes them back).
* `kitti`: alpha and the 2D box (the export recomputes both from the 3D box, so they differ
  from KITTI's own: its boxes were drawn around the visible object, its alpha came from
  unrounded values, 0.01 off), and a detection's score (a 16th value) if there is one.
* Lines with no 3D box (DontCare, or a dimension of -1) come in as 2D RECTANGLE objects on
  their image_2 box; their dimensions, location and rotation_y (DontCare's are the devkit's
  placeholders -1, -1000, -10) are kept under `kitti` too. DontCare regions go back out as
  DontCare lines.
* A line that does not parse (a wrong count, a word where a number belongs, a 2D box whose
  right edge is left of its left one) is kept verbatim under the document's
  `kittiUnconverted`, `{"line": n, "text": ...}`, and listed as a `Skip` naming the line;
  the other lines are imported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from annostack.domain.annotations import (
    MAX_DOCUMENT_BYTES,
    AnnotationDocument,
    Box2DObject,
    Box3D,
    Box3DObject,
)
from annostack.domain.errors import Invalid
from annostack.domain.exports.imported import ImportedDocument, ResultError, checked_import
from annostack.domain.exports.kitti_calib import KittiCalibration, Matrix
from annostack.domain.exports.report import Skip

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc",
               "DontCare")  # fmt: skip
_CANONICAL = {name.lower(): name for name in KITTI_TYPES}
DONT_CARE = "DontCare"
MIN_DEPTH = 0.01  # m: a corner nearer the image plane than this projects to infinity
LEVEL = 1e-6  # rad: roll or pitch below this is taken as none (float noise of an editor)
UNCONVERTED = "kittiUnconverted"
JSON = dict[str, Any]


@dataclass(frozen=True)
class KittiLabel:
    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # left, top, right, bottom (pixels, 0-based)
    dimensions: tuple[float, float, float]  # height, width, length (m)
    location: tuple[float, float, float]  # bottom centre in the rectified camera frame (m)
    rotation_y: float
    score: float | None = None  # a detection's 16th value; labels have none

    def line(self) -> str:
        values = (self.alpha, *self.bbox, *self.dimensions, *self.location, self.rotation_y)
        score = () if self.score is None else (_fixed(self.score),)
        return " ".join(
            [self.type, _fixed(self.truncated), str(self.occluded), *map(_fixed, values), *score]
        )

    @property
    def has_3d(self) -> bool:
        return self.type != DONT_CARE and min(self.dimensions) > 0


def _fixed(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def parse_labels(text: str) -> list[KittiLabel]:
    """Every line of a label file; Invalid naming the first line that is not a label."""
    return [_parse_label(line, number) for number, line in _lines(text)]


def _lines(text: str) -> list[tuple[int, str]]:
    """The lines that are not blank, each with its number in the file (from 1)."""
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _parse_label(line: str, number: int) -> KittiLabel:
    fields = line.split()
    if len(fields) not in (15, 16):  # 16: a detection's score
        raise Invalid(f"label line {number} has {len(fields)} values, not 15")
    try:
        v = [float(field) for field in fields[1:]]
        occluded = int(fields[2])
    except ValueError as error:
        raise Invalid(f"label line {number}: {error}") from error
    if not all(math.isfinite(value) for value in v):
        raise Invalid(f"label line {number} holds a non-finite number")
    return KittiLabel(
        fields[0], v[0], occluded, v[2], (v[3], v[4], v[5], v[6]), (v[7], v[8], v[9]),
        (v[10], v[11], v[12]), v[13], v[14] if len(v) == 15 else None,
    )  # fmt: skip


def normalise(angle: float) -> float:
    """The same angle in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def rotation_y_of_yaw(yaw: float, calibration: KittiCalibration) -> float:
    heading = calibration.rotation @ np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return normalise(math.atan2(-heading[2], heading[0]))


def yaw_of_rotation_y(rotation_y: float, calibration: KittiCalibration) -> float:
    """The exact inverse of rotation_y_of_yaw.

    rotation_y_of_yaw keeps the heading's x and z in the camera frame and drops its y, so
    every LiDAR-horizontal heading whose camera image lies in the plane of KITTI's heading
    and camera y gives this rotation_y. That plane has normal n = (sin ry, 0, cos ry), and
    n . (R v) = (R^T n) . v, so the horizontal v is perpendicular to R^T n. (Turning the
    camera heading back with R^-1 instead would be off by up to 0.1 mrad on real
    calibrations, whose rotations are not exactly level.)
    """
    sin, cos = math.sin(rotation_y), math.cos(rotation_y)
    normal = calibration.rotation.T @ np.array([sin, 0.0, cos])
    heading = np.array([-normal[1], normal[0], 0.0])
    if (calibration.rotation @ heading) @ np.array([cos, 0.0, -sin]) < 0:
        heading = -heading
    return normalise(math.atan2(heading[1], heading[0]))


def corners(label: KittiLabel) -> Matrix:
    """8x3: the box's corners in the rectified camera frame (the devkit's computeBox3D)."""
    h, w, l = label.dimensions  # noqa: E741 - KITTI's own names
    x = np.array([l, l, -l, -l, l, l, -l, -l]) / 2
    y = np.array([0, 0, 0, 0, -h, -h, -h, -h], dtype=np.float64)
    z = np.array([w, -w, -w, w, w, -w, -w, w]) / 2
    c, s = math.cos(label.rotation_y), math.sin(label.rotation_y)
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.asarray((turn @ np.vstack([x, y, z])).T + np.array(label.location))


def label_of_box(
    box: Box3D,
    kitti_type: str,
    calibration: KittiCalibration,
    image_size: tuple[int, int] | None = None,
    truncated: float | None = None,
    occluded: int | None = None,
) -> KittiLabel:
    """One LiDAR box as a KITTI label; Invalid with the reason if it has no 2D box."""
    length, width, height = box.size
    if min(box.size) <= 0:
        raise Invalid("the box has no volume (a size is 0)")
    bottom = np.array(box.center) - np.array([0.0, 0.0, height / 2])
    location = calibration.to_rect(bottom)[0]
    rotation_y = rotation_y_of_yaw(box.rotation[2], calibration)
    alpha = normalise(rotation_y - math.atan2(location[0], location[2]))
    label = KittiLabel(
        kitti_type, 0.0, 0, alpha, (0.0, 0.0, 0.0, 0.0), (height, width, length),
        (float(location[0]), float(location[1]), float(location[2])), rotation_y,
    )  # fmt: skip
    bbox, outside = _image_box(corners(label), calibration, image_size)
    return KittiLabel(
        kitti_type, outside if truncated is None else truncated,
        0 if occluded is None else occluded, alpha, bbox, label.dimensions, label.location,
        rotation_y,
    )  # fmt: skip


def _image_box(
    points: Matrix, calibration: KittiCalibration, image_size: tuple[int, int] | None
) -> tuple[tuple[float, float, float, float], float]:
    """The projected box (clipped) and the fraction of it outside the image."""
    if np.any(points[:, 2] < MIN_DEPTH):
        raise Invalid("a corner is behind the camera: no 2D box in image_2")
    pixels = calibration.to_image(points)
    left, top = pixels.min(axis=0)
    right, bottom = pixels.max(axis=0)
    if image_size is None:
        return (float(left), float(top), float(right), float(bottom)), 0.0
    width, height = image_size
    clipped = (
        float(np.clip(left, 0, width - 1)), float(np.clip(top, 0, height - 1)),
        float(np.clip(right, 0, width - 1)), float(np.clip(bottom, 0, height - 1)),
    )  # fmt: skip
    inside = max(clipped[2] - clipped[0], 0.0) * max(clipped[3] - clipped[1], 0.0)
    if inside <= 0:
        raise Invalid("the box projects outside the image")
    return clipped, 1.0 - inside / ((right - left) * (bottom - top))


def box_of_label(label: KittiLabel, calibration: KittiCalibration) -> Box3D:
    """A KITTI label's 3D box in the LiDAR frame (the inverse of label_of_box)."""
    height, width, length = label.dimensions
    bottom = calibration.to_lidar(np.array(label.location))[0]
    center = bottom + np.array([0.0, 0.0, height / 2])
    yaw = yaw_of_rotation_y(label.rotation_y, calibration)
    return Box3D(
        center=[float(value) for value in center],
        size=[length, width, height],
        rotation=[0.0, 0.0, yaw],
    )


@dataclass(frozen=True)
class KittiFrame:
    """One frame's `label_2/<frame>.txt` (its `calib/` file is `format_calibration`'s)."""

    label: str
    exported: int
    skipped: tuple[Skip, ...]
    lossy: tuple[Skip, ...]


def kitti_type(obj: Box3DObject | Box2DObject, classes: Mapping[str, str]) -> str | None:
    """The KITTI type of an object's class (see the module docstring), or None."""
    extra = obj.model_extra or {}
    for name in (obj.class_id, extra.get("className")):
        if name is None:
            continue
        if str(name) in classes:
            return classes[str(name)]
        if str(name).lower() in _CANONICAL:
            return _CANONICAL[str(name).lower()]
    return None


def export_labels(
    document: AnnotationDocument,
    calibration: KittiCalibration,
    classes: Mapping[str, str] | None = None,
    image_size: tuple[int, int] | None = None,
) -> KittiFrame:
    """A document's objects as one label file; everything not written is in `skipped`."""
    lines: list[str] = []
    skipped: list[Skip] = []
    lossy: list[Skip] = []
    for obj in document.objects:
        if not isinstance(obj, Box3DObject | Box2DObject):
            skipped.append(Skip(obj.id, obj.type, "KITTI labels hold 3D boxes", True))
            continue
        kind = kitti_type(obj, classes or {})
        if kind is None:
            reason = f"class {obj.class_id!r} has no KITTI type (give a class mapping)"
            skipped.append(Skip(obj.id, obj.type, reason))
            continue
        try:
            lines.append(_line(obj, kind, calibration, image_size))
        except Invalid as error:
            skipped.append(Skip(obj.id, obj.type, str(error)))
            continue
        if isinstance(obj, Box3DObject) and max(map(abs, obj.contour.rotation[:2])) > LEVEL:
            lossy.append(Skip(obj.id, obj.type, "roll and pitch left out: KITTI has yaw only"))
    label = "".join(line + "\n" for line in lines)
    return KittiFrame(label, len(lines), tuple(skipped), tuple(lossy))


def _line(
    obj: Box3DObject | Box2DObject,
    kind: str,
    calibration: KittiCalibration,
    image_size: tuple[int, int] | None,
) -> str:
    if isinstance(obj, Box2DObject):
        if kind != DONT_CARE:
            raise Invalid("a 2D box has no 3D box for KITTI (only DontCare regions are 2D)")
        return _dont_care(obj).line()
    truncated = obj.attributes.get("truncated")
    occluded = obj.attributes.get("occluded")
    return label_of_box(
        obj.contour,
        kind,
        calibration,
        image_size,
        float(truncated) if isinstance(truncated, int | float) else None,
        int(occluded) if isinstance(occluded, int) else None,
    ).line()


def _dont_care(obj: Box2DObject) -> KittiLabel:
    box = obj.contour
    bbox = (box.x, box.y, box.x + box.width, box.y + box.height)
    # The devkit's "invalid" values for everything a DontCare region does not have.
    return KittiLabel(DONT_CARE, -1, -1, -10, bbox, (-1, -1, -1), (-1000, -1000, -1000), -10)


def document_from_labels(text: str, calibration: KittiCalibration) -> tuple[JSON, list[Skip]]:
    """A label file as an annostack document (JSON values); a Skip per line kept unconverted."""
    objects: list[JSON] = []
    unconverted: list[JSON] = []
    skipped: list[Skip] = []
    for number, line in _lines(text):
        try:
            objects.append(_object(number, _parse_label(line, number), calibration))
        except Invalid as error:
            unconverted.append({"line": number, "text": line})
            skipped.append(Skip(None, None, str(error)))
    document: JSON = {"objects": objects}
    if unconverted:
        document[UNCONVERTED] = unconverted
    return document, skipped


def import_label_file(body: bytes, calibration: KittiCalibration) -> ImportedDocument:
    """A `label_2/<frame>.txt` as the frame's `imported` document, converted with its calib."""
    if len(body) > MAX_DOCUMENT_BYTES:  # its document would be larger still: not parsed at all
        raise ResultError(f"{len(body)} bytes; a label file is at most {MAX_DOCUMENT_BYTES}")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise ResultError("not UTF-8 text") from None
    return checked_import(0, *document_from_labels(text, calibration), UNCONVERTED)


def _object(number: int, label: KittiLabel, calibration: KittiCalibration) -> JSON:
    kept: JSON = {"alpha": label.alpha, "bbox": list(label.bbox)}
    if label.score is not None:
        kept["score"] = label.score
    attributes = {"truncated": label.truncated, "occluded": label.occluded}
    common = {"id": f"kitti-{number}", "classId": label.type, "attributes": attributes}
    if label.has_3d:
        box = box_of_label(label, calibration).model_dump()
        return {**common, "type": "3D_BOX", "contour": box, "kitti": kept}
    left, top, right, bottom = label.bbox
    if right < left or bottom < top:
        raise Invalid(f"label line {number}: the 2D box ends before it starts")
    contour = {"x": left, "y": top, "width": right - left, "height": bottom - top}
    kept |= {"dimensions": list(label.dimensions), "location": list(label.location),
             "rotationY": label.rotation_y}  # fmt: skip
    return {**common, "type": "RECTANGLE", "contour": contour, "kitti": kept}
