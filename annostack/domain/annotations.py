"""Annotation result documents: one JSON file per (data item, annotation source).

A document holds every object annotated on one item (hundreds for a point-cloud frame). The
schema checks what tools rely on (geometry present and well-formed, ids and classes typed) and
keeps every field it does not know: annotation tools add their own, and a save must never drop
them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SOURCE = re.compile(SOURCE_PATTERN)
MAX_DOCUMENT_BYTES = 8 * 2**20  # a dense segmentation of a 300k-point frame fits easily


class Open(BaseModel):
    """Unknown fields are kept as they came."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]


class Box3D(Open):
    center: Vector3 = Field(description="x, y, z of the box centre, metres.")
    size: Vector3 = Field(description="Length, width, height, metres.")
    rotation: Vector3 = Field(description="Roll, pitch, yaw, radians.")


class Box2D(Open):
    x: float
    y: float
    width: float = Field(ge=0)
    height: float = Field(ge=0)


class Point2D(Open):
    x: float
    y: float


class ObjectBase(Open):
    id: str = Field(min_length=1, max_length=64, description="Object id, unique in the document.")
    class_id: str | int | None = Field(default=None, alias="classId")
    track_id: str | int | None = Field(default=None, alias="trackId")
    attributes: dict[str, object] = Field(default_factory=dict)


class Box3DObject(ObjectBase):
    type: Literal["3D_BOX"]
    contour: Box3D


class Box2DObject(ObjectBase):
    type: Literal["2D_BOX", "RECTANGLE"]
    contour: Box2D


class PolygonObject(ObjectBase):
    type: Literal["POLYGON"]
    points: list[Point2D] = Field(min_length=3)


class PolylineObject(ObjectBase):
    type: Literal["POLYLINE"]
    points: list[Point2D] = Field(min_length=2)


class SegmentationObject(ObjectBase):
    type: Literal["SEGMENTATION"]
    point_indices: list[Annotated[int, Field(ge=0)]] = Field(alias="pointIndices")


class ClassificationObject(ObjectBase):
    type: Literal["CLASSIFICATION"]


AnnotationObject = Annotated[
    Box3DObject
    | Box2DObject
    | PolygonObject
    | PolylineObject
    | SegmentationObject
    | ClassificationObject,
    Field(discriminator="type"),
]


class AnnotationDocument(Open):
    """What a client saves for one item and one source."""

    objects: list[AnnotationObject] = Field(default_factory=list, max_length=100_000)
    classifications: list[dict[str, object]] = Field(default_factory=list)


def valid_source(source: str) -> bool:
    # fullmatch: with `match`, `$` lets "lidar\n" through (and a key "lidar\n.json").
    return bool(SOURCE.fullmatch(source))
