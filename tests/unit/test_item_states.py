"""An item ends with the worker's verdict whichever of the API and the worker writes first.

The API queues a file before it marks the item arrived (so a crash cannot lose the work), and
a worker on an idle queue can finish in between: both orders run here on the tenant tables in
an in-memory SQLite database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from annostack.adapters.tenant_tables import data_items, datasets, metadata
from annostack.domain.items import FileKind, ItemStatus, PixelSize, classify
from annostack.services.item_states import mark_arrived, record_outcome

ITEM = 7
JPEG = classify("front/000001.jpg", "IMAGE", "image/jpeg")
SIDECAR = classify("camera_config/000001.json", "POINT_CLOUD", "application/json")
PHOTO = PixelSize(width=64, height=48)


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(datasets.insert().values(id=1, name="d", display_name="d", data_type="IMAGE"))
        conn.execute(
            data_items.insert().values(
                id=ITEM, dataset_id=1, name="front/000001.jpg", object_key="data/1/7",
                content_type="image/jpeg", size=10, status=ItemStatus.UPLOADING,
            )
        )  # fmt: skip
    yield engine
    engine.dispose()


def item(engine: Engine) -> sa.Row[tuple[object, ...]]:
    with engine.connect() as conn:
        return conn.execute(sa.select(data_items).where(data_items.c.id == ITEM)).one()


def test_arrival_then_verdict_ends_with_the_verdict(engine: Engine) -> None:
    with engine.begin() as conn:
        mark_arrived(conn, ITEM, JPEG, checksum="etag-1")
    assert item(engine).status == ItemStatus.UPLOADED
    with engine.begin() as conn:
        record_outcome(conn, ITEM, ItemStatus.PROCESSED, None)
    assert (item(engine).status, item(engine).checksum) == (ItemStatus.PROCESSED, "etag-1")


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [(ItemStatus.PROCESSED, None), (ItemStatus.FAILED, "not a JPEG file")],
)
def test_a_verdict_before_arrival_is_not_overwritten_by_it(
    engine: Engine, verdict: ItemStatus, reason: str | None
) -> None:
    """The race a fast worker wins: its verdict lands on an `uploading` item, then the API's
    arrival records the checksum and kind and leaves the verdict (and the size) alone."""
    with engine.begin() as conn:
        record_outcome(conn, ITEM, verdict, reason, PHOTO if reason is None else None)
    with engine.begin() as conn:
        mark_arrived(conn, ITEM, JPEG, checksum="etag-1", object_key="data/1/7/x.jpg")
    found = item(engine)
    assert (found.status, found.status_reason) == (verdict, reason)
    assert (found.width, found.height) == ((64, 48) if reason is None else (None, None))
    assert (found.checksum, found.kind, found.object_key) == (
        "etag-1", FileKind.IMAGE, "data/1/7/x.jpg",
    )  # fmt: skip


def test_arrival_of_a_sidecar_stores_it(engine: Engine) -> None:
    with engine.begin() as conn:
        mark_arrived(conn, ITEM, SIDECAR)
    assert (item(engine).status, item(engine).kind) == (ItemStatus.STORED, FileKind.SIDECAR)


@pytest.mark.parametrize("settled", [ItemStatus.IMPORTED, ItemStatus.STORED])
def test_a_worker_verdict_never_touches_items_it_does_not_process(
    engine: Engine, settled: ItemStatus
) -> None:
    with engine.begin() as conn:
        conn.execute(data_items.update().values(status=settled))
        record_outcome(conn, ITEM, ItemStatus.PROCESSED, None, PHOTO)
    assert (item(engine).status, item(engine).width) == (settled, None), "nor sizes them"


def test_the_size_is_recorded_with_the_processed_verdict(engine: Engine) -> None:
    with engine.begin() as conn:
        mark_arrived(conn, ITEM, JPEG)
    assert (item(engine).width, item(engine).height) == (None, None), "unknown until processed"
    with engine.begin() as conn:
        record_outcome(conn, ITEM, ItemStatus.PROCESSED, None, PHOTO)
    found = item(engine)
    assert (found.status, found.width, found.height) == (ItemStatus.PROCESSED, 64, 48)


def test_a_verdict_without_a_size_keeps_the_recorded_one(engine: Engine) -> None:
    """A later job that made no thumbnails (or failed) measured nothing: the file is the same."""
    with engine.begin() as conn:
        record_outcome(conn, ITEM, ItemStatus.PROCESSED, None, PHOTO)
        record_outcome(conn, ITEM, ItemStatus.PROCESSED, None)
    assert (item(engine).width, item(engine).height) == (64, 48)
