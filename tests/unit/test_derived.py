"""Derived files: the names the listing signs are exactly the ones the worker writes."""

from __future__ import annotations

import pytest

from annostack.domain.derived import FILES_OF_KIND, derived_files, derived_key
from annostack.domain.items import FileKind, ItemStatus, ProcessingMessage
from annostack.services.processing import Options, Task, process
from tests.integration.workloads import jpeg, small_cloud
from tests.media import tone, video

ITEM = 7
SAMPLES = {
    FileKind.IMAGE: ("data/1/7.jpg", jpeg),
    FileKind.POINT_CLOUD: ("data/1/7.pcd", lambda: small_cloud(3000, 1)),
    FileKind.VIDEO: ("data/1/7.mp4", lambda: video(seconds=2.0)),
    FileKind.AUDIO: ("data/1/7.wav", tone),
    FileKind.TEXT: ("data/1/7.txt", lambda: b"hello\nworld\n"),
}


def written(kind: FileKind, options: Options) -> set[str]:
    """The keys the worker's processing writes for a sample of `kind` (nothing is stored)."""
    key, sample = SAMPLES[kind]
    message = ProcessingMessage(tenant="acme", item_id=ITEM, key=key, kind=kind)
    task = Task.parse(message.model_dump_json(by_alias=True), "persistent://acme/p/media")
    return {output.key for output in process(task, sample(), options).outputs}


def listed(kind: FileKind, *, with_optional: bool) -> set[str]:
    files = derived_files(kind, ItemStatus.PROCESSED)
    return {derived_key(ITEM, f.name) for f in files if with_optional or not f.optional}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_the_listing_names_what_the_worker_writes(kind: FileKind) -> None:
    # Below the split threshold: everything but the optional (split) files.
    assert written(kind, Options()) == listed(kind, with_optional=False)


def test_a_split_cloud_also_has_its_optional_files_and_tiles() -> None:
    keys = written(FileKind.POINT_CLOUD, Options(split_above_points=1000))
    tiles = {key for key in keys if key.startswith(f"derived/{ITEM}/tiles/") and "index" not in key}
    assert tiles, "the sample cloud spans several tiles"
    assert keys - tiles == listed(FileKind.POINT_CLOUD, with_optional=True)
    optional = {f.name for f in FILES_OF_KIND[FileKind.POINT_CLOUD] if f.optional}
    assert optional == {"preview.pcd", "tiles/index.json"}


@pytest.mark.parametrize("status", [s for s in ItemStatus if s is not ItemStatus.PROCESSED])
def test_nothing_is_listed_before_an_item_is_processed(status: ItemStatus) -> None:
    assert all(derived_files(kind, status) == () for kind in FileKind)


@pytest.mark.parametrize("kind", [FileKind.ARCHIVE, FileKind.SIDECAR, FileKind.UNSUPPORTED])
def test_kinds_kept_as_they_are_have_no_derived_files(kind: FileKind) -> None:
    assert derived_files(kind, ItemStatus.PROCESSED) == ()


def test_keys_are_built_from_the_integer_id_only() -> None:
    assert derived_key(42, "bev.png") == "derived/42/bev.png"
    with pytest.raises(ValueError, match="invalid literal"):
        derived_key("42/../../etc", "x")  # type: ignore[arg-type]
