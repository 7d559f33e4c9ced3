"""Xtreme1 result files to annostack documents and back, with nothing lost either way.

Xtreme1 exports one `result/<frame>.json` per frame: a JSON array with one entry per
result source, as its `ExportUseCase` writes `List<DataResultExportBO>` (its importer also
takes a single such object):

    [{"version": "Xtreme1 V0.6", "dataId": 3091870, "sourceName": "Ground Truth",
      "classificationValues": null,
      "objects": [{"id": "033D...", "type": "3D_BOX", "classId": 4555, "className": "car",
                   "trackId": "-COO...", "trackName": "2", "classValues": [...],
                   "contour": {"pointN": 1606, "points": [],
                               "size3D": {"x": 4.78, "y": 3.03, "z": 1.58},
                               "center3D": {"x": -3.48, "y": -9.45, "z": 0.56},
                               "viewIndex": 0, "rotation3D": {"x": 0, "y": 0, "z": 0.58}},
                   "modelConfidence": null, "modelClass": ""}]}]

One entry becomes one annostack document (one source). The conversion works on JSON values,
not on validated models, because it must keep what annostack does not know, where it was:

* **Renamed in place.** Every key keeps its position; only geometry changes name and shape:
  `center3D/size3D/rotation3D` {x, y, z} <-> `center/size/rotation` [x, y, z] inside the
  contour; a polygon's or polyline's `contour.points` <-> the object's `points` (the rest of
  that contour, such as `interior` holes and `area`, stays under `contour`; on the way out
  `points` is written first in it, as Xtreme1's own editor writes it).
* **2D boxes.** Xtreme1 draws rectangles as corner points (`BOUNDING_BOX`, `RECTANGLE`,
  `2D_RECT`) and a projected cuboid as 8 points (`2D_BOX`); annostack's box is x, y, width,
  height. The box is the points' bounds, written at the front of the contour; the points stay
  in it. On the way out the box is dropped again and the points are kept as they were if the
  box still bounds them, else moved and scaled onto the edited box.
* **Types.** 3D_BOX, POLYGON and POLYLINE keep their names; the 2D boxes become RECTANGLE
  (rectangles) or 2D_BOX (the cuboid), with Xtreme1's own name in `xtreme1Type` next to
  `type` unless it is BOUNDING_BOX (the type a native annostack 2D box is exported as).
* **What annostack cannot hold** (an unknown type such as `3D_SEGMENT_POINTS`, a box without
  geometry) is kept verbatim in the document's `xtreme1Unconverted` list with its position,
  reported as a `Skip`, and put back in its place on the way out.
* annostack's own `attributes` and `classifications` are written only when not empty
  (Xtreme1 has `classValues` and `classificationValues` instead; those are kept as they
  came). An object without an id gets `x1-<index>` and a marker, so the id is dropped again.

So `export(import(entry)) == entry`, key order included, for what Xtreme1 writes; the test
compares serialised bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from annostack.domain.errors import Invalid
from annostack.domain.exports.report import Skip

JSON = dict[str, Any]
VECTORS = {"center3D": "center", "size3D": "size", "rotation3D": "rotation"}
AXES = ("x", "y", "z")
BOX_TYPES = {"BOUNDING_BOX": "RECTANGLE", "RECTANGLE": "RECTANGLE", "2D_RECT": "RECTANGLE",
             "2D_BOX": "2D_BOX"}  # fmt: skip
LINE_TYPES = {"POLYGON": 3, "POLYLINE": 2}  # and the points each needs (annostack's minimum)
DEFAULT_BOX_TYPE = "BOUNDING_BOX"  # Xtreme1's image-tool rectangle
TYPE_KEY = "xtreme1Type"
UNCONVERTED = "xtreme1Unconverted"
GENERATED_ID = "xtreme1GeneratedId"


# -- Xtreme1 -> annostack ---------------------------------------------------------------------


def result_from_xtreme1(value: object) -> list[tuple[JSON, list[Skip]]]:
    """A `result/<frame>.json` (an array of sources, or one) as annostack documents."""
    entries = value if isinstance(value, list) else [value]
    return [document_from_xtreme1(entry) for entry in entries]


def document_from_xtreme1(entry: object) -> tuple[JSON, list[Skip]]:
    """One source's result as an annostack document; Skips for objects kept unconverted."""
    if not isinstance(entry, dict):
        raise Invalid("an Xtreme1 result entry is a JSON object")
    document: JSON = {}
    skipped: list[Skip] = []
    for key, value in entry.items():
        if key != "objects":
            document[key] = value
            continue
        objects, unconverted = [], []
        for index, raw in enumerate(value or []):
            try:
                objects.append(object_from_xtreme1(raw, index))
            except Invalid as error:
                unconverted.append({"index": index, "object": raw})
                skipped.append(_skip_of(raw, str(error)))
        document["objects"] = objects
        if unconverted:
            document[UNCONVERTED] = unconverted
    return document, skipped


def _skip_of(raw: object, reason: str) -> Skip:
    fields = raw if isinstance(raw, dict) else {}
    kind = fields.get("type")
    known = kind == "3D_BOX" or kind in BOX_TYPES or kind in LINE_TYPES
    return Skip(_str(fields.get("id")), _str(kind), reason, unsupported_type=not known)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def object_from_xtreme1(raw: object, index: int = 0) -> JSON:
    """One Xtreme1 object as an annostack object; Invalid if annostack cannot hold it."""
    if not isinstance(raw, dict):
        raise Invalid("an Xtreme1 object is a JSON object")
    kind = raw.get("type")
    if kind != "3D_BOX" and kind not in BOX_TYPES and kind not in LINE_TYPES:
        raise Invalid(f"Xtreme1 object type {kind!r} has no annostack type")
    contour = raw.get("contour")
    if not isinstance(contour, dict):
        raise Invalid("the object has no contour")
    converted: JSON = {}
    if not raw.get("id"):
        converted.update({"id": f"x1-{index}", GENERATED_ID: True})
    for key, value in raw.items():
        if key == "id" and GENERATED_ID in converted:
            continue
        if key == "type":
            converted.update(_type_from_xtreme1(kind))
        elif key == "contour" and kind in LINE_TYPES:
            converted.update(_line_from_xtreme1(contour, LINE_TYPES[kind]))
        elif key == "contour":
            converted[key] = _box3d_from(contour) if kind == "3D_BOX" else _box2d_from(contour)
        else:
            converted[key] = value
    return converted


def _type_from_xtreme1(kind: str) -> JSON:
    if kind not in BOX_TYPES:
        return {"type": kind}
    if kind == DEFAULT_BOX_TYPE:
        return {"type": BOX_TYPES[kind]}
    return {"type": BOX_TYPES[kind], TYPE_KEY: kind}


def _box3d_from(contour: JSON) -> JSON:
    if any(not _is_xyz(contour.get(name)) for name in VECTORS):
        raise Invalid("a 3D_BOX contour needs center3D, size3D and rotation3D as {x, y, z}")
    return {
        VECTORS.get(key, key): [value[a] for a in AXES] if key in VECTORS else value
        for key, value in contour.items()
    }


def _is_xyz(value: object) -> bool:
    return isinstance(value, dict) and all(_is_number(value.get(axis)) for axis in AXES)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _points(value: object, minimum: int) -> list[JSON]:
    if not isinstance(value, list) or len(value) < minimum:
        raise Invalid(f"the contour needs at least {minimum} points")
    if not all(isinstance(p, dict) and _is_number(p.get("x")) and _is_number(p.get("y"))
               for p in value):  # fmt: skip
        raise Invalid("a contour point is not {x, y}")
    return value


def _box2d_from(contour: JSON) -> JSON:
    points = _points(contour.get("points"), 2)
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    box = {"x": min(xs), "y": min(ys), "width": max(xs) - min(xs), "height": max(ys) - min(ys)}
    return {**box, **contour}


def _line_from_xtreme1(contour: JSON, minimum: int) -> JSON:
    points = _points(contour.get("points"), minimum)
    rest = {key: value for key, value in contour.items() if key != "points"}
    return {"points": points, "contour": rest} if rest else {"points": points}


# -- annostack -> Xtreme1 ---------------------------------------------------------------------


def result_to_xtreme1(documents: Iterable[Mapping[str, Any]]) -> tuple[list[JSON], list[Skip]]:
    """A frame's documents (one per source) as the array of a `result/<frame>.json`."""
    entries, skipped = [], []
    for document in documents:
        entry, skips = document_to_xtreme1(document)
        entries.append(entry)
        skipped.extend(skips)
    return entries, skipped


def document_to_xtreme1(document: Mapping[str, Any]) -> tuple[JSON, list[Skip]]:
    """An annostack document (as stored: JSON values) as one Xtreme1 result entry."""
    entry: JSON = {}
    skipped: list[Skip] = []
    for key, value in document.items():
        if key == "objects":
            entry[key] = list(_objects_to_xtreme1(value, document.get(UNCONVERTED, []), skipped))
        elif key == "classifications" and not value:
            continue
        elif key != UNCONVERTED:
            entry[key] = value
    return entry, skipped


def _objects_to_xtreme1(
    objects: list[JSON], unconverted: list[JSON], skipped: list[Skip]
) -> Iterator[JSON]:
    kept = {item["index"]: item["object"] for item in unconverted}
    converted = (_converted(obj, skipped) for obj in objects)
    position = 0
    for obj in converted:
        while position in kept:
            yield kept.pop(position)
            position += 1
        if obj is not None:
            yield obj
            position += 1
    yield from kept.values()


def _converted(obj: JSON, skipped: list[Skip]) -> JSON | None:
    try:
        return object_to_xtreme1(obj)
    except Invalid as error:
        skipped.append(Skip(_str(obj.get("id")), _str(obj.get("type")), str(error), True))
        return None


def object_to_xtreme1(obj: Mapping[str, Any]) -> JSON:
    """One annostack object as an Xtreme1 object; Invalid if Xtreme1 has no such type."""
    kind = obj.get("type")
    if kind not in ("3D_BOX", "RECTANGLE", "2D_BOX") and kind not in LINE_TYPES:
        raise Invalid(f"Xtreme1 results have no {kind} objects")
    out: JSON = {}
    for key, value in obj.items():
        if key in (TYPE_KEY, GENERATED_ID) or (key == "id" and obj.get(GENERATED_ID)):
            continue
        if key == "type":
            out[key] = _type_to_xtreme1(obj)
        elif key == "attributes" and not value:
            continue
        elif kind in LINE_TYPES and key == "points":
            out["contour"] = {"points": value, **obj.get("contour", {})}
        elif kind in LINE_TYPES and key == "contour":
            continue  # written with the points
        elif key == "contour":
            out[key] = _box3d_to(value) if kind == "3D_BOX" else _box2d_to(value)
        else:
            out[key] = value
    return out


def _type_to_xtreme1(obj: Mapping[str, Any]) -> str:
    kind = str(obj["type"])
    if kind in ("RECTANGLE", "2D_BOX"):
        return str(obj.get(TYPE_KEY, DEFAULT_BOX_TYPE))
    return kind


def _box3d_to(contour: Mapping[str, Any]) -> JSON:
    names = {value: key for key, value in VECTORS.items()}
    return {
        names.get(key, key): dict(zip(AXES, value, strict=True)) if key in names else value
        for key, value in contour.items()
    }


def _box2d_to(contour: Mapping[str, Any]) -> JSON:
    x, y, width, height = (contour[key] for key in ("x", "y", "width", "height"))
    rest = {
        key: value for key, value in contour.items() if key not in ("x", "y", "width", "height")
    }
    points = rest.get("points")
    if not points:
        corners = [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]
        return {"points": [{"x": px, "y": py} for px, py in corners], **rest}
    bounds = _box2d_from({"points": points})
    if (bounds["x"], bounds["y"], bounds["width"], bounds["height"]) != (x, y, width, height):
        rest["points"] = [_moved(p, bounds, contour) for p in points]
    return rest


def _moved(point: JSON, old: JSON, new: Mapping[str, Any]) -> JSON:
    """A point of the old bounds at the same relative place in the edited box."""
    sx = new["width"] / old["width"] if old["width"] else 1.0
    sy = new["height"] / old["height"] if old["height"] else 1.0
    x = new["x"] + (point["x"] - old["x"]) * sx
    y = new["y"] + (point["y"] - old["y"]) * sy
    return {**point, "x": x, "y": y}
