"""The export report: counts every object, lists a bounded number by name."""

from __future__ import annotations

from annostack.domain.exports.report import MAX_LISTED, ExportFormat, ExportReport, Skip


def test_skipped_objects_are_counted_listed_and_their_types_tallied() -> None:
    report = ExportReport()
    box = Skip("b1", "3D_BOX", "COCO holds 2D boxes and polygons", unsupported_type=True)
    report.record(ExportFormat.COCO, "frame-0", exported=3, skipped=[box])
    report.record(ExportFormat.KITTI, "frame-0", exported=1, lossy=[Skip("b1", "3D_BOX", "roll")])
    assert report.formats[ExportFormat.COCO].objects == 3
    assert report.skipped[0].item == "frame-0" and report.skipped[0].object_id == "b1"
    assert report.unsupported_types == {"coco:3D_BOX": 1}
    assert report.summary() == (
        "coco: 1 items, 3 objects, 1 skipped; kitti: 1 items, 1 objects, 1 with loss"
    )
    assert report.model_dump(by_alias=True)["unsupportedTypes"] == {"coco:3D_BOX": 1}


def test_the_lists_are_capped_but_the_counts_are_not() -> None:
    report = ExportReport()
    skip = Skip("p", "POLYLINE", "no polylines in COCO", unsupported_type=True)
    for n in range(MAX_LISTED + 50):
        report.record(ExportFormat.COCO, f"item-{n}", exported=0, skipped=[skip])
        report.record_without_size(ExportFormat.COCO, f"item-{n}")
    assert len(report.skipped) == len(report.images_without_size) == MAX_LISTED
    assert report.formats[ExportFormat.COCO].images_without_size == MAX_LISTED + 50
    assert report.model_dump(by_alias=True)["imagesWithoutSize"][0] == "item-0"
    assert report.formats[ExportFormat.COCO].skipped == MAX_LISTED + 50
    assert report.unsupported_types["coco:POLYLINE"] == MAX_LISTED + 50
