"""Xtreme1 `result/<stem>.json` files as annostack annotation documents (source `imported`).

Kept minimal and in one function (`convert_result`) on purpose: the export work
(`annostack/domain/exports/`) has its own Xtreme1 object converter, and the two meet at merge.

Xtreme1's shape, as its backend reads it (`UploadDataUseCase.handleDataResult`,
`DataAnnotationResultObjectBO`): an object with `objects`, or a list of such objects whose
`objects` are concatenated. An object has `id`, `type`, `trackId`, `trackName`, `classId`,
`className`, `classValues`, `modelConfidence`, `modelClass` and a `contour`; the pc-tool writes
`contour.center3D / size3D / rotation3D` ({x, y, z}) for 3D boxes and `contour.points` for 2D
shapes (`translateToObjectV2`).

Nothing is dropped. Converted objects keep every field annostack does not know (documents
are open), and the original `contour` fields beside the converted ones. Objects of a type with
no annostack counterpart — Xtreme1's `2D_BOX` is a projected cuboid of 8 points, not a
rectangle — are kept whole under the document's `xtreme1Unconverted`, and counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from annostack.domain.annotations import CheckedDocument, check_document, parse_json
from annostack.domain.errors import Invalid, TooLarge

SOURCE = "imported"
UNCONVERTED = "xtreme1Unconverted"
BOX_3D_TYPES = {"3D_BOX", "3d"}
RECTANGLE_TYPES = {"2D_RECT", "rect", "RECT"}
POINT_TYPES = {"POLYGON": "POLYGON", "polygon": "POLYGON", "POLYLINE": "POLYLINE",
               "polyline": "POLYLINE"}  # fmt: skip


class ResultError(ValueError):
    """A result file that cannot become an annotation document; the message says why."""


@dataclass(frozen=True)
class ConvertedResult:
    document: CheckedDocument  # checked as any saved document is
    unconverted: int  # objects kept under `xtreme1Unconverted`


def convert_result(body: bytes, stem: str) -> ConvertedResult:
    """One result file as an annotation document; object ids default to `<stem>-<n>`."""
    try:
        value = parse_json(body)
    except Invalid as error:
        raise ResultError(str(error)) from None
    top, objects = _objects_of(value)
    converted: list[dict[str, Any]] = []
    kept: list[Any] = []
    for number, obj in enumerate(objects):
        done = _object(obj, f"{stem}-{number}")
        if done is None:
            kept.append(obj)
        else:
            converted.append(done)
    document: dict[str, Any] = {**top, "objects": converted}
    if kept:
        document[UNCONVERTED] = kept
    try:
        return ConvertedResult(check_document(orjson.dumps(document)), len(kept))
    except (Invalid, TooLarge) as error:
        raise ResultError(f"not a valid annotation document once converted: {error}") from None


def _objects_of(value: object) -> tuple[dict[str, Any], list[Any]]:
    if isinstance(value, list):
        parts = [part for part in value if isinstance(part, Mapping)]
        return {}, [obj for part in parts for obj in part.get("objects") or []]
    if not isinstance(value, Mapping):
        raise ResultError("a result is an object with `objects`, or a list of them")
    objects = value.get("objects") or []
    if not isinstance(objects, list):
        raise ResultError("`objects` must be a list")
    return {k: v for k, v in value.items() if k != "objects"}, objects


def _object(obj: object, default_id: str) -> dict[str, Any] | None:
    """The object in annostack's schema; None if its type has no counterpart."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("contour"), Mapping):
        return None
    kind, contour = obj.get("type"), dict(obj["contour"])
    base = {k: v for k, v in obj.items() if k not in ("type", "contour")}
    base["id"] = str(obj.get("id") or default_id)[:64]
    if kind in BOX_3D_TYPES:
        box = _box_3d(contour)
        return None if box is None else {**base, "type": "3D_BOX", "contour": box}
    if kind in RECTANGLE_TYPES:
        rectangle = _rectangle(contour)
        return None if rectangle is None else {**base, "type": "RECTANGLE", "contour": rectangle}
    if kind in POINT_TYPES and isinstance(contour.get("points"), list):
        points = contour.pop("points")
        return {**base, "type": POINT_TYPES[str(kind)], "points": points, "contour": contour}
    return None


def _xyz(value: object) -> list[object] | None:
    if not isinstance(value, Mapping):
        return None
    return [value.get("x"), value.get("y"), value.get("z")]


def _box_3d(contour: dict[str, Any]) -> dict[str, Any] | None:
    center, size = _xyz(contour.get("center3D")), _xyz(contour.get("size3D"))
    rotation = _xyz(contour.get("rotation3D"))
    if center is None or size is None or rotation is None:
        return None
    rest = {k: v for k, v in contour.items() if k not in ("center3D", "size3D", "rotation3D")}
    return {**rest, "center": center, "size": size, "rotation": rotation}


def _rectangle(contour: dict[str, Any]) -> dict[str, Any] | None:
    points = contour.get("points")
    if not isinstance(points, list) or not points:
        return None
    try:
        xs = [float(point["x"]) for point in points]
        ys = [float(point["y"]) for point in points]
    except (TypeError, KeyError, ValueError):
        return None
    box = {"x": min(xs), "y": min(ys), "width": max(xs) - min(xs), "height": max(ys) - min(ys)}
    return {**contour, **box}  # the corner points stay, beside the box
