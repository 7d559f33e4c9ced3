"""Xtreme1 results: import then export gives the same bytes; annostack objects go out too."""

from __future__ import annotations

import copy

import orjson
import pytest

from annostack.domain.annotations import AnnotationDocument
from annostack.domain.exports.xtreme1 import (
    UNCONVERTED,
    document_to_xtreme1,
    object_to_xtreme1,
    result_from_xtreme1,
    result_to_xtreme1,
)

CLASS_VALUES = [{"id": "7722689b-05a9-46b4-8e15-63dd0da55082", "name": "type", "type": "RADIO",
                 "alias": "type", "value": "suv", "isLeaf": True}]  # fmt: skip
# A fusion frame as Xtreme1 exports it (the shape of docs.xtreme1.io's "Data Annotation
# Result" and ExportUseCase: nulls written, contour keys in the editor's order), with every
# kind of object it has, one annostack does not know, and a field nobody documents.
RESULT = [
    {
        "version": "Xtreme1 V0.6",
        "dataId": 3091870,
        "sourceName": "Ground Truth",
        "classificationValues": None,
        "objects": [
            {"id": "033DA6D7-3F4F-411E-B97C-DCD43C762BD4", "type": "3D_BOX",
             "classId": 455555556457, "className": "car", "trackId": "-COOq29Lf0S8XAvD",
             "trackName": "2", "classValues": CLASS_VALUES,
             "contour": {"pointN": 1606, "points": [],
                         "size3D": {"x": 4.784937233663604, "y": 3.0378181156906283, "z": 1.58},
                         "center3D": {"x": -3.4826021259294277, "y": -9.45454056815398,
                                      "z": 0.56},
                         "viewIndex": 0, "rotation3D": {"x": 0, "y": 0, "z": 0.5879414415603956}},
             "modelConfidence": None, "modelClass": ""},
            {"id": "5B0A3C4E-8E0D-4F7B-9A39-2B1E3F3C9D10", "type": "2D_RECT",
             "classId": 455555556457, "className": "car", "trackId": "-COOq29Lf0S8XAvD",
             "trackName": "2", "classValues": [],
             "contour": {"points": [{"x": 812.25, "y": 401.5}, {"x": 812.25, "y": 520.75},
                                    {"x": 1003.0, "y": 520.75}, {"x": 1003.0, "y": 401.5}],
                         "viewIndex": 1},
             "modelConfidence": 0.87, "modelClass": "Car"},
            {"id": "8F1D0E22-1C55-4C1E-A7B2-0B3D7B1B6A42", "type": "2D_BOX",
             "classId": 455555556457, "className": "car", "trackId": "-COOq29Lf0S8XAvD",
             "trackName": "2", "classValues": [],
             "contour": {"points": [{"x": 10, "y": 20}, {"x": 60, "y": 20}, {"x": 60, "y": 70},
                                    {"x": 10, "y": 70}, {"x": 20, "y": 10}, {"x": 70, "y": 10},
                                    {"x": 70, "y": 60}, {"x": 20, "y": 60}],
                         "viewIndex": 2},
             "modelConfidence": None, "modelClass": ""},
            {"id": "segment-1", "type": "3D_SEGMENT_POINTS", "classId": 455555556458,
             "className": "road", "trackId": None, "trackName": None, "classValues": [],
             "contour": {"indices": [1, 2, 3, 5, 8]}, "modelConfidence": None, "modelClass": ""},
            {"id": "C1E2A3B4-0000-4000-8000-00000000000A", "type": "POLYGON", "classId": 12,
             "className": "lane", "trackId": None, "trackName": None, "classValues": [],
             "contour": {"points": [{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 4, "y": 3}],
                         "interior": [], "area": 6},
             "modelConfidence": None, "modelClass": "", "reviewer": {"name": "x"}},
            {"id": "C1E2A3B4-0000-4000-8000-00000000000B", "type": "POLYLINE", "classId": 13,
             "className": "curb", "trackId": None, "trackName": None, "classValues": [],
             "contour": {"points": [{"x": 1.5, "y": 2}, {"x": 3, "y": 4.25}]},
             "modelConfidence": None, "modelClass": ""},
        ],
    },
    {"version": "Xtreme1 V0.6", "dataId": 3091870, "sourceName": "model-run-7",
     "classificationValues": [{"id": 1, "values": [{"id": "weather", "value": "rain"}]}],
     "objects": [
         {"id": "D1", "type": "BOUNDING_BOX", "classId": 1, "className": "car",
          "contour": {"points": [{"x": 1, "y": 2}, {"x": 11, "y": 2}, {"x": 11, "y": 7},
                                 {"x": 1, "y": 7}], "area": 50, "rotation": 0}},
     ]},
]  # fmt: skip


def test_import_then_export_gives_the_same_bytes() -> None:
    imported = result_from_xtreme1(copy.deepcopy(RESULT))
    for document, _ in imported:
        AnnotationDocument.model_validate(document)  # what annostack's API would store
    exported, skipped = result_to_xtreme1(document for document, _ in imported)
    assert skipped == []
    assert orjson.dumps(exported) == orjson.dumps(RESULT)


def test_imported_objects_are_annostack_objects_with_everything_else_kept() -> None:
    (document, skipped), _ = result_from_xtreme1(copy.deepcopy(RESULT))
    box, rect, cuboid, polygon, polyline = document["objects"]
    assert box["contour"]["center"] == [-3.4826021259294277, -9.45454056815398, 0.56]
    assert box["contour"]["rotation"] == [0, 0, 0.5879414415603956]
    assert box["contour"]["pointN"] == 1606 and box["classValues"] == CLASS_VALUES
    assert (rect["type"], rect["xtreme1Type"]) == ("RECTANGLE", "2D_RECT")
    assert rect["contour"] | {"points": None} == {
        "x": 812.25, "y": 401.5, "width": 190.75, "height": 119.25, "points": None,
        "viewIndex": 1}  # fmt: skip
    assert (cuboid["type"], cuboid["contour"]["width"]) == ("2D_BOX", 60)
    assert polygon["points"][2] == {"x": 4, "y": 3}
    assert polygon["contour"] == {"interior": [], "area": 6}
    assert polygon["reviewer"] == {"name": "x"}
    assert "contour" not in polyline
    # The segmentation is kept as it came, and said to be.
    assert document[UNCONVERTED][0]["index"] == 3
    (skip,) = skipped
    assert (skip.object_id, skip.object_type, skip.unsupported_type) == (
        "segment-1", "3D_SEGMENT_POINTS", True)  # fmt: skip


def test_an_edited_box_moves_its_points_with_it() -> None:
    (document, _), _ = result_from_xtreme1(copy.deepcopy(RESULT))
    rect = document["objects"][1]
    rect["contour"].update({"x": 800.0, "width": 381.5})  # moved left, twice as wide
    exported = object_to_xtreme1(rect)
    assert [(p["x"], p["y"]) for p in exported["contour"]["points"]] == [
        (800.0, 401.5), (800.0, 520.75), (1181.5, 520.75), (1181.5, 401.5)]  # fmt: skip
    assert "x" not in exported["contour"]


def test_native_annostack_objects_go_out_in_xtreme1_shape() -> None:
    document = {
        "objects": [
            {
                "id": "b",
                "type": "3D_BOX",
                "classId": "car",
                "attributes": {"parked": True},
                "contour": {"center": [1, 2, 3], "size": [4, 2, 1.5], "rotation": [0, 0, 0.5]},
            },
            {
                "id": "r",
                "type": "RECTANGLE",
                "classId": "car",
                "attributes": {},
                "contour": {"x": 1, "y": 2, "width": 3, "height": 4},
            },
            {"id": "s", "type": "SEGMENTATION", "pointIndices": [1, 2]},
        ],
        "classifications": [],
    }
    AnnotationDocument.model_validate(document)
    entry, skipped = document_to_xtreme1(document)
    box, rect = entry["objects"]
    assert box == {"id": "b", "type": "3D_BOX", "classId": "car", "attributes": {"parked": True},
                   "contour": {"center3D": {"x": 1, "y": 2, "z": 3},
                               "size3D": {"x": 4, "y": 2, "z": 1.5},
                               "rotation3D": {"x": 0, "y": 0, "z": 0.5}}}  # fmt: skip
    assert rect == {"id": "r", "type": "BOUNDING_BOX", "classId": "car",
                    "contour": {"points": [{"x": 1, "y": 2}, {"x": 4, "y": 2}, {"x": 4, "y": 6},
                                           {"x": 1, "y": 6}]}}  # fmt: skip
    assert "classifications" not in entry
    assert [(s.object_id, s.unsupported_type) for s in skipped] == [("s", True)]


def test_an_object_without_an_id_gets_one_and_loses_it_again() -> None:
    raw = {"objects": [{"type": "POLYLINE", "contour": {"points": [{"x": 0, "y": 0}] * 2}}]}
    ((document, _),) = result_from_xtreme1(copy.deepcopy(raw))
    assert document["objects"][0]["id"] == "x1-0"
    AnnotationDocument.model_validate(document)
    assert document_to_xtreme1(document)[0] == raw


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"id": "a", "type": "3D_BOX", "contour": {"center3D": {"x": 1}}}, "center3D"),
        ({"id": "a", "type": "POLYGON", "contour": {"points": [{"x": 1, "y": 1}]}}, "3 points"),
        ({"id": "a", "type": "BOUNDING_BOX"}, "no contour"),
    ],
)
def test_objects_annostack_cannot_hold_are_kept_and_reported(obj: dict, reason: str) -> None:
    ((document, skipped),) = result_from_xtreme1({"objects": [obj]})
    assert document["objects"] == [] and document[UNCONVERTED] == [{"index": 0, "object": obj}]
    assert reason in skipped[0].reason and not skipped[0].unsupported_type
    assert document_to_xtreme1(document)[0] == {"objects": [obj]}
