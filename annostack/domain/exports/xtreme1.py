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
  (rectangles) or 2D_BOX (the cuboid). Xtreme1's own name is kept in `xtreme1Type` next to
  `type` unless it is the name the annostack type is exported as (BOUNDING_BOX for both 2D
  boxes); so are the other spellings the first scenes importer accepted (`3d`, `rect`, `RECT`,
  `polygon`, `polyline`).
* **What annostack cannot hold** (an unknown type such as `3D_SEGMENT_POINTS`, a box without
  geometry, an id that is not a string of at most 64 characters) is kept verbatim in the
  document's `xtreme1Unconverted` list with its position, reported as a `Skip`, and put back
  in its place on the way out.
* annostack's own `attributes` and `classifications` are written only when not empty
  (Xtreme1 has `classValues` and `classificationValues` instead; those are kept as they
  came). An object without an id gets `x1-<index>` and a marker, so the id is dropped again.

So `export(import(entry)) == entry`, key order included, for what Xtreme1 writes; the test
compares serialised bytes.

A dataset import (`import_result`, used for the `result/` files of an Xtreme1 archive or
prefix) reads a file with these functions and checks each document as any saved one is
(domain.exports.imported: `ResultError` if the file does not parse or a document does not
validate). Entry n of the file becomes source `imported` (n = 0) or `imported-<n+1>`: one
document per entry, never merged, so exporting a frame's documents in source order gives the
file back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from annostack.domain.annotations import MAX_OBJECT_ID, parse_json
from annostack.domain.errors import Invalid
from annostack.domain.exports.imported import ImportedDocument, ResultError, checked_import
from annostack.domain.exports.report import Skip

JSON = dict[str, Any]
VECTORS = {"center3D": "center", "size3D": "size", "rotation3D": "rotation"}
AXES = ("x", "y", "z")
# Xtreme1's type names -> annostack's. The lower-case and `RECT` spellings are the ones the
# first scenes importer accepted; kept so the files it converted still convert.
TYPES = {"3D_BOX": "3D_BOX", "3d": "3D_BOX", "POLYGON": "POLYGON", "polygon": "POLYGON",
         "POLYLINE": "POLYLINE", "polyline": "POLYLINE", "BOUNDING_BOX": "RECTANGLE",
         "RECTANGLE": "RECTANGLE", "2D_RECT": "RECTANGLE", "RECT": "RECTANGLE",
         "rect": "RECTANGLE", "2D_BOX": "2D_BOX"}  # fmt: skip
# annostack's types -> the Xtreme1 name an object without `xtreme1Type` is exported as;
# BOUNDING_BOX is Xtreme1's image-tool rectangle.
EXPORTED_AS = {"3D_BOX": "3D_BOX", "POLYGON": "POLYGON", "POLYLINE": "POLYLINE",
               "RECTANGLE": "BOUNDING_BOX", "2D_BOX": "BOUNDING_BOX"}  # fmt: skip
LINE_TYPES = {"POLYGON": 3, "POLYLINE": 2}  # and the points each needs (annostack's minimum)
TYPE_KEY = "xtreme1Type"
UNCONVERTED = "xtreme1Unconverted"
GENERATED_ID = "xtreme1GeneratedId"


# -- Xtreme1 -> annostack ---------------------------------------------------------------------


def result_from_xtreme1(value: object, id_prefix: str = "x1") -> list[tuple[JSON, list[Skip]]]:
    """A `result/<frame>.json` (an array of sources, or one) as annostack documents."""
    entries = value if isinstance(value, list) else [value]
    return [document_from_xtreme1(entry, id_prefix) for entry in entries]


def document_from_xtreme1(entry: object, id_prefix: str = "x1") -> tuple[JSON, list[Skip]]:
    """One source's result as an annostack document; Skips for objects kept unconverted."""
    if not isinstance(entry, dict):
        raise Invalid("an Xtreme1 result entry is a JSON object")
    document: JSON = {}
    skipped: list[Skip] = []
    for key, value in entry.items():
        if key != "objects":
            document[key] = value
            continue
        if value is not None and not isinstance(value, list):
            raise Invalid("`objects` must be a list")
        objects, unconverted = [], []
        for index, raw in enumerate(value or []):
            try:
                objects.append(object_from_xtreme1(raw, index, id_prefix))
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
    return Skip(_str(fields.get("id")), _str(kind), reason, unsupported_type=kind not in TYPES)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def object_from_xtreme1(raw: object, index: int = 0, id_prefix: str = "x1") -> JSON:
    """One Xtreme1 object as an annostack object; Invalid if annostack cannot hold it.

    An object without an id gets `<id_prefix>-<index>` (cut to fit annostack's limit) and a
    marker, so that the id is dropped again on the way out.
    """
    if not isinstance(raw, dict):
        raise Invalid("an Xtreme1 object is a JSON object")
    name = raw.get("type")
    kind = TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        raise Invalid(f"Xtreme1 object type {name!r} has no annostack type")
    contour = raw.get("contour")
    if not isinstance(contour, dict):
        raise Invalid("the object has no contour")
    converted: JSON = {} if raw.get("id") else _generated_id(id_prefix, index)
    for key, value in raw.items():
        if key == "id" and GENERATED_ID in converted:
            continue
        if key == "id":
            converted[key] = _object_id(value)
        elif key == "type":
            converted.update(_type_from_xtreme1(str(name), kind))
        elif key == "contour" and kind in LINE_TYPES:
            converted.update(_line_from_xtreme1(contour, LINE_TYPES[kind]))
        elif key == "contour":
            converted[key] = _box3d_from(contour) if kind == "3D_BOX" else _box2d_from(contour)
        else:
            converted[key] = value
    return converted


def _generated_id(prefix: str, index: int) -> JSON:
    suffix = f"-{index}"
    return {"id": prefix[: MAX_OBJECT_ID - len(suffix)] + suffix, GENERATED_ID: True}


def _object_id(value: object) -> str:
    # Checked here, not left to the document's validation, so that one such object is kept
    # unconverted instead of failing the whole file.
    if not isinstance(value, str) or len(value) > MAX_OBJECT_ID:
        raise Invalid(f"an object id is a string of at most {MAX_OBJECT_ID} characters")
    return value


def _type_from_xtreme1(name: str, kind: str) -> JSON:
    return {"type": kind} if EXPORTED_AS[kind] == name else {"type": kind, TYPE_KEY: name}


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


# -- a dataset's imported results ------------------------------------------------------------


def import_result(body: bytes, stem: str) -> list[ImportedDocument]:
    """A `result/<stem>.json` as checked documents; ids of objects without one from `stem`."""
    try:
        converted = result_from_xtreme1(parse_json(body), id_prefix=stem)
    except Invalid as error:
        raise ResultError(str(error)) from None
    return [
        checked_import(position, document, skipped, UNCONVERTED)
        for position, (document, skipped) in enumerate(converted)
    ]


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
    if kind not in EXPORTED_AS:
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
    return str(obj.get(TYPE_KEY, EXPORTED_AS[str(obj["type"])]))


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
