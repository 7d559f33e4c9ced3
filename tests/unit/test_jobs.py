"""ProcessingJob logic that needs no backend: routing, message parsing, the fold's verdicts."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import orjson
import pytest

from annostack.adapters.job_progress import ImportState, JobCounts, JobProgress
from annostack.domain.items import SkipReason
from annostack.domain.processing import (
    ImportSource,
    ProcessingJobSpec,
    processing_job_manifest,
    wanted_on,
)
from annostack.domain.tenants import TenantNames
from annostack.services.dataset_imports import source_fingerprint
from annostack.services.jobs import JobRef, JobRunner, _routed
from annostack.services.processing import InvalidTask, Processed, Task, process_image
from tests.integration.workloads import jpeg

JOB = JobRef(tenant="acme", uid="3f0c")


class CannedProgress(JobProgress):
    """Counts as Redis would return them, without Redis."""

    def __init__(self, counts: JobCounts) -> None:
        self.canned = counts

    def counts(self, tenant: str, job: str) -> JobCounts:
        return self.canned


def fold(spec: ProcessingJobSpec, total: int, fanned_out: bool, **counts: object) -> str:
    values: dict[str, object] = {
        "expected": total,
        "succeeded": 0,
        "failed": 0,
        "cancelled": False,
        "import_state": None,
        "import_reason": "",
    }
    values.update(counts)
    runner = JobRunner(publisher=None, progress=CannedProgress(JobCounts(**values)))  # type: ignore[arg-type]
    outcome = runner.fold(JOB, spec, total, fanned_out)
    return f"{outcome.phase}/{outcome.reason}" if outcome.reason else outcome.phase


SPEC = ProcessingJobSpec(dataset="d", operations=["thumbnail"])
ARCHIVE = ProcessingJobSpec(dataset="d", operations=["thumbnail"], archive_item_id=7)


@pytest.mark.parametrize(
    ("spec", "total", "fanned_out", "counts", "verdict"),
    [
        (SPEC, 10, False, {"succeeded": 10}, "Running"),  # more may still be published
        (SPEC, 10, True, {"succeeded": 9}, "Running"),
        (SPEC, 10, True, {"succeeded": 10}, "Complete/AllSucceeded"),
        (SPEC, 10, True, {"succeeded": 8, "failed": 2}, "Failed/ItemsFailed"),
        (SPEC, 0, True, {}, "Complete/AllSucceeded"),  # an empty dataset is done at once
        (SPEC.model_copy(update={"cancelled": True}), 10, False, {}, "Cancelled/Cancelled"),
        (ARCHIVE, 0, True, {"import_state": ImportState.PENDING}, "Running"),
        (ARCHIVE, 0, True, {"expected": 3, "import_state": ImportState.DONE}, "Running"),
        (
            ARCHIVE,
            0,
            True,
            {"expected": 3, "succeeded": 3, "import_state": ImportState.DONE},
            "Complete/AllSucceeded",
        ),
        (ARCHIVE, 0, True, {"import_state": ImportState.FAILED}, "Failed/ImportFailed"),
        (  # an archive of nothing processable is not "Complete, 0 items"
            ARCHIVE,
            0,
            True,
            {"import_state": ImportState.DONE, "skipped": {"unsupported": 4}},
            "Failed/NothingToProcess",
        ),
        (SPEC, 3, True, {"succeeded": 3, "skipped": {"sidecar": 1}}, "Complete/AllSucceeded"),
    ],
)
def test_the_fold_decides_the_phase(
    spec: ProcessingJobSpec, total: int, fanned_out: bool, counts: dict[str, object], verdict: str
) -> None:
    assert fold(spec, total, fanned_out, **counts) == verdict


def test_the_total_grows_with_what_the_archive_import_expects() -> None:
    counts = JobCounts(5, 5, 0, False, ImportState.DONE, "")
    runner = JobRunner(publisher=None, progress=CannedProgress(counts))  # type: ignore[arg-type]
    assert runner.fold(JOB, ARCHIVE, 0, True).total == 5


def test_operations_are_routed_to_the_topic_that_does_them() -> None:
    everything = ["thumbnail", "compress", "render-bev", "split"]
    assert wanted_on("thumbnails", everything) == ["thumbnail"]
    assert wanted_on("pointclouds", everything) == ["compress", "render-bev", "split"]
    assert wanted_on("pointclouds", ["thumbnail"]) == []
    assert wanted_on("archives", everything) == []


def test_a_job_message_carries_its_job_and_operations() -> None:
    payload = {"tenant": "acme", "itemId": 4, "key": "raw/a.jpg", "job": "u1", "operations": []}
    task = Task.parse(orjson.dumps(payload), "persistent://x/thumbnails")
    assert task.job == "u1" and not task.wants("thumbnail")
    assert process_image(task, jpeg()) == Processed([]), "nothing asked, nothing written"
    upload = Task.parse(orjson.dumps({"tenant": "acme", "itemId": 4, "key": "data/1/4.jpg"}), "t")
    assert upload.job is None and upload.wants("thumbnail"), "an upload gets everything"


@pytest.mark.parametrize(
    "key", ["derived/4/thumb-200.jpg", "annotations/4/a.json", "/etc/passwd", "raw/../x", ""]
)
def test_processing_never_reads_platform_outputs_or_odd_keys(key: str) -> None:
    payload = orjson.dumps({"tenant": "acme", "itemId": 4, "key": key})
    with pytest.raises(InvalidTask):
        Task.parse(payload, "persistent://x/thumbnails")


def test_malformed_operations_are_an_invalid_task() -> None:
    payload = orjson.dumps({"tenant": "a", "itemId": 1, "key": "data/1/1.jpg", "operations": 5})
    with pytest.raises(InvalidTask):
        Task.parse(payload, "persistent://x/thumbnails")


def test_the_manifest_is_owned_by_its_dataset() -> None:
    owner = {"apiVersion": "annostack.io/v1alpha1", "kind": "Dataset", "name": "d", "uid": "u"}
    manifest = processing_job_manifest("tenant-acme", "d-import-1", SPEC, "test", owner)
    metadata = manifest["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["ownerReferences"] == [
        {**owner, "controller": True, "blockOwnerDeletion": True}
    ]
    assert manifest["spec"] == {
        "dataset": "d",
        "operations": ["thumbnail"],
        "cancelled": False,
        "ttlSecondsAfterFinished": 86400,
    }


def test_a_changed_source_is_a_new_import() -> None:
    first = source_fingerprint(ImportSource(s3_prefix="raw/a/"))
    assert first == source_fingerprint(ImportSource(s3_prefix="raw/a/"))
    assert first != source_fingerprint(ImportSource(s3_prefix="raw/b/"))


def test_resources_belong_to_the_tenant_of_their_namespace() -> None:
    assert TenantNames.of_namespace("tenant-acme") == TenantNames(tenant="acme")
    assert TenantNames.of_namespace("kube-system") is None


def test_what_a_job_skipped_is_counted_by_reason_and_named() -> None:
    rows = [
        SimpleNamespace(id=1, name="a.pcd", content_type="", object_key="k/1", kind="pointcloud"),
        SimpleNamespace(id=2, name="calib.json", content_type="", object_key="k/2", kind="sidecar"),
        SimpleNamespace(id=3, name="m.obj", content_type="", object_key="k/3", kind="unsupported"),
        SimpleNamespace(id=4, name="p.jpg", content_type="", object_key="k/4", kind="image"),
        SimpleNamespace(id=5, name="old.mp4", content_type="", object_key="k/5", kind=None),
    ]
    spec = ProcessingJobSpec(dataset="d", operations=["render-bev"])
    skipped: defaultdict[SkipReason, list[str]] = defaultdict(list)
    routes = _routed(rows, spec, skipped)  # type: ignore[arg-type]
    assert [(r.item_id, r.topic, r.operations) for r in routes] == [
        (1, "pointclouds", ["render-bev"])
    ]
    assert skipped == {
        SkipReason.SIDECAR: ["calib.json"],
        SkipReason.UNSUPPORTED: ["m.obj"],
        SkipReason.NOT_REQUESTED: ["p.jpg", "old.mp4"],  # classified now: registered before kinds
    }
    examples = {"unsupported": ["a.obj", "b.obj", "c.obj"], "sidecar": ["calib.json"]}
    skips = {"unsupported": 5, "sidecar": 1}
    counts = JobCounts(1, 1, 0, False, None, "", skips, examples)
    runner = JobRunner(publisher=None, progress=CannedProgress(counts))  # type: ignore[arg-type]
    outcome = runner.fold(JOB, SPEC, 1, True)
    assert (outcome.phase, outcome.skipped) == ("Complete", 6)
    assert outcome.message == (
        "1 items processed; 6 skipped: 1 sidecar (calib.json); 5 unsupported (a.obj, b.obj, "
        "c.obj, ...)"
    )
