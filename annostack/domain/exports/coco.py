"""COCO instances JSON for 2D boxes and polygons, written while the items stream in.

A COCO file is one object with three arrays, ``images``, ``annotations`` and ``categories``,
and an item contributes to the first two at once. To write it without holding the items,
`CocoWriter` sends each item's image entry straight to the output and its annotations to a
*spool* (a temporary file the caller owns, so this stays free of I/O of its own); `close`
copies the spool behind the images in chunks and writes the categories last. Memory is one
item plus a chunk, whatever the size of the dataset.

**Categories come last, from a known class list.** Ids must be stable (the same class gets
the same id in every export of the dataset, or models trained on two exports disagree), so
the caller passes the dataset's class list and class i gets id i + 1. A class met that is
not in the list gets the next id, in the order met, and is still written; only those ids
depend on the export. Writing categories at the end is what lets such classes in without a
first pass over the data (JSON does not order an object's keys; pycocotools, detectron2 and
torchvision read them in any order).

Per image: ``width`` and ``height`` as the worker recorded them when it made the image's
thumbnails: in pixels, upright (EXIF orientation applied), the frame the boxes are drawn in.
An image whose size was never recorded (not processed yet, or processed before sizes were
recorded) gets null for both, as every image did before; the caller lists it in the report,
and processing it again records its size.

Per annotation: ``bbox`` is [x, y, width, height] in pixels, ``area`` the box's or polygon's
area (shoelace), ``segmentation`` the polygon as one flat [x1, y1, x2, y2, ...] ring
(holes are not written: COCO polygons have none) or [] for a box, ``iscrowd`` 0, and an
object's non-empty annostack ``attributes`` as CVAT writes them. Annotation ids count from 1
in the order written. 3D boxes, polylines and the other types are skipped and reported.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import orjson

from annostack.domain.annotations import AnnotationDocument, Box2DObject, ObjectBase, PolygonObject
from annostack.domain.exports.report import Skip

CHUNK = 1 * 2**20
Record = dict[str, object]


@dataclass(frozen=True)
class CocoImage:
    id: int  # the item's id: stable across exports
    file_name: str
    width: int | None = None  # None: not recorded (written as null)
    height: int | None = None


class CocoWriter:
    """Writes one COCO file to `out`; `spool` (readable, writable, seekable) holds the
    annotations until `close`."""

    def __init__(self, out: IO[bytes], spool: IO[bytes], classes: Sequence[str] = ()) -> None:
        self.out, self.spool = out, spool
        self.categories = {name: n for n, name in enumerate(classes, start=1)}
        self.images = self.annotations = 0
        self.out.write(b'{"images":[')

    def add(self, image: CocoImage, document: AnnotationDocument) -> tuple[int, list[Skip]]:
        """Writes one item; returns how many annotations it gave and what was skipped."""
        entry = {"id": image.id, "file_name": image.file_name, "width": image.width,
                 "height": image.height}  # fmt: skip
        self._write(self.out, self.images, entry)
        self.images += 1
        written, skipped = 0, []
        for obj in document.objects:
            if not isinstance(obj, Box2DObject | PolygonObject):
                skipped.append(Skip(obj.id, obj.type, "COCO holds 2D boxes and polygons", True))
                continue
            name = class_name(obj)
            if name is None:
                skipped.append(Skip(obj.id, obj.type, "the object has no class"))
                continue
            self._write(self.spool, self.annotations, self._annotation(image.id, name, obj))
            self.annotations += 1
            written += 1
        return written, skipped

    def close(self) -> None:
        """Writes the annotations and the categories; the file is complete after this."""
        self.out.write(b'],"annotations":[')
        self.spool.seek(0)
        shutil.copyfileobj(self.spool, self.out, CHUNK)
        categories = [{"id": n, "name": name} for name, n in self.categories.items()]
        self.out.write(b'],"categories":' + orjson.dumps(categories) + b"}")

    def _annotation(self, image_id: int, name: str, obj: Box2DObject | PolygonObject) -> Record:
        category = self.categories.setdefault(name, len(self.categories) + 1)
        if isinstance(obj, Box2DObject):
            box = obj.contour
            bbox, area = [box.x, box.y, box.width, box.height], box.width * box.height
            segmentation: list[list[float]] = []
        else:
            bbox, area, segmentation = polygon_geometry([(p.x, p.y) for p in obj.points])
        annotation: Record = {
            "id": self.annotations + 1, "image_id": image_id, "category_id": category,
            "bbox": bbox, "area": area, "segmentation": segmentation, "iscrowd": 0,
        }  # fmt: skip
        if obj.attributes:
            annotation["attributes"] = obj.attributes
        return annotation

    @staticmethod
    def _write(stream: IO[bytes], index: int, record: Record) -> None:
        stream.write((b"," if index else b"") + orjson.dumps(record))


def class_name(obj: ObjectBase) -> str | None:
    """The class an object is counted under: Xtreme1's `className` if kept, else classId."""
    extra = obj.model_extra or {}
    name = extra.get("className") or obj.class_id
    return None if name is None or name == "" else str(name)


def polygon_geometry(
    points: list[tuple[float, float]],
) -> tuple[list[float], float, list[list[float]]]:
    """bbox [x, y, w, h], area (shoelace) and COCO segmentation of one ring of points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    following = points[1:] + points[:1]
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, following, strict=True))
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    return bbox, abs(twice) / 2, [[value for point in points for value in point]]
