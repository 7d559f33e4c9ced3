"""The worker's processing step without Pulsar or Redis: an image read from a fake bucket, its
thumbnails written back, and its verdict recorded with its size in the tenant's table (SQLite).

The Worker is the real one; only its HTTP client (the bucket, through pre-signed URLs) and its
tenant engine are swapped for in-process ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from annostack.adapters.tenant_tables import data_items, datasets, metadata
from annostack.domain.items import FileKind, ItemStatus, ProcessingMessage
from annostack.domain.tenant_stack import TenantConnection
from annostack.services.processing import Task
from annostack.services.tenancy import TenantContext
from annostack.workers.runtime import Worker
from annostack.workers.settings import WorkerSettings
from tests.unit.test_browsing import BUCKET
from tests.unit.test_browsing import connection as tenant_connection
from tests.unit.test_rendering import photo

ITEM = 7
KEY = f"data/1/{ITEM}/photo.jpg"


def connection() -> TenantConnection:
    # The listing tests' tenant, with a TLS mode the worker's database settings accept.
    return tenant_connection().model_copy(update={"db_tls": "disabled"})


class FakeBucket:
    """GET and conditional PUT (If-None-Match: *) of objects, by key."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = dict(objects)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.url.path.removeprefix(f"/{BUCKET}/")
        if request.method == "GET":
            found = self.objects.get(key)
            return httpx.Response(404) if found is None else httpx.Response(200, content=found)
        if key in self.objects:
            return httpx.Response(412)
        self.objects[key] = request.content
        return httpx.Response(200)


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(datasets.insert().values(id=1, name="d", display_name="d", data_type="IMAGE"))
        conn.execute(
            data_items.insert().values(
                id=ITEM, dataset_id=1, name="photo.jpg", object_key=KEY, kind=FileKind.IMAGE,
                content_type="image/jpeg", size=10, status=ItemStatus.UPLOADED,
            )
        )  # fmt: skip
    yield engine
    engine.dispose()


def worker_on(bucket: FakeBucket, engine: Engine) -> Worker:
    worker = Worker(connection(), WorkerSettings())
    worker.http.close()
    worker.http = httpx.Client(transport=httpx.MockTransport(bucket))
    worker.tenant = TenantContext(worker.names, worker.connection, engine, time.monotonic())
    return worker


def image_task() -> Task:
    message = ProcessingMessage(tenant="acme", item_id=ITEM, key=KEY, kind=FileKind.IMAGE)
    return Task.parse(message.model_dump_json(by_alias=True), "persistent://x/thumbnails")


@pytest.mark.parametrize(
    ("orientation", "shown"),
    [(1, (64, 48)), (6, (48, 64))],  # 6: stored landscape, shown portrait (a phone held up)
)
def test_a_processed_image_is_recorded_with_its_size_as_shown(
    engine: Engine, orientation: int, shown: tuple[int, int]
) -> None:
    bucket = FakeBucket({KEY: photo(64, 48, orientation=orientation)})
    worker = worker_on(bucket, engine)
    task = image_task()
    worker._set_status(task, worker._process(task))
    with engine.connect() as conn:
        row = conn.execute(sa.select(data_items).where(data_items.c.id == ITEM)).one()
    assert (row.status, (row.width, row.height)) == (ItemStatus.PROCESSED, shown)
    thumbnails = [f"derived/{ITEM}/thumb-{size}.jpg" for size in (200, 400, 800)]
    assert sorted(bucket.objects) == sorted([KEY, *thumbnails])
    worker.http.close()
