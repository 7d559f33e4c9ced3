"""Browsing a dataset's items: cursors, filters, pages and their derived-file URLs.

The queries run on an in-memory SQLite database with the tenant tables (the SQL is portable
Core; the MySQL form of the one dialect-sensitive part, LIKE's escape, is checked compiled).
The route is exercised in-process (ASGI transport, no server) with the tenant dependency
replaced, for what FastAPI parses: aliases, repeated filters, the page-size limit.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.dialects import mysql

from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import annotation_results, data_items, datasets, metadata
from annostack.apps.deps import current_tenant, object_io
from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.domain.errors import Invalid, NotFound
from annostack.domain.items import FileKind, ItemStatus
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import TenantNames
from annostack.services.browsing import (
    ItemFilter,
    decode_cursor,
    encode_cursor,
    items_query,
    list_items,
    sign_derived,
)
from annostack.services.tenancy import TenantContext
from annostack.settings import ObjectStoreSettings

S3 = ObjectStoreSettings(
    endpoint="http://127.0.0.1:18333",
    region="us-east-1",
    access_key=SecretStr("AKIDEXAMPLE"),
    secret_key=SecretStr("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
)
SIGNER = Presigner(S3)
BUCKET = "annostack-acme"
DATASET, OTHER_DATASET = 3, 4
# id: (name, kind, status, reason)
ITEMS: dict[int, tuple[str, FileKind | None, ItemStatus, str | None]] = {
    10: ("front/000001.jpg", FileKind.IMAGE, ItemStatus.PROCESSED, None),
    11: ("front/000002.jpg", FileKind.IMAGE, ItemStatus.UPLOADED, None),
    12: ("lidar/000001.pcd", FileKind.POINT_CLOUD, ItemStatus.PROCESSED, None),
    13: ("lidar/000002.pcd", FileKind.POINT_CLOUD, ItemStatus.FAILED, "not a PCD file"),
    14: ("100%_done/mesh.obj", FileKind.UNSUPPORTED, ItemStatus.UNSUPPORTED, ".obj files..."),
    15: ("100x_done/a.txt", FileKind.TEXT, ItemStatus.PROCESSED, None),
    16: ("old/000003.jpg", None, ItemStatus.PROCESSED, None),  # registered before kinds
}
ANNOTATED = {10: ["camera", "lidar"], 12: ["lidar"]}
SIZED = {10: (64, 48)}  # id: (width, height) the worker recorded


def connection() -> TenantConnection:
    secret = SecretStr("x")
    return TenantConnection(
        tenant="acme", db_host="h", db_port=4000, db_user="u", db_password=secret, db_tls="off",
        database="t_acme", s3_endpoint=S3.endpoint, s3_region="us-east-1", s3_access_key=secret,
        s3_secret_key=secret, bucket=BUCKET, pulsar_service_url="pulsar://h:6650",
        pulsar_namespace="annostack-acme/processing", redis_url=SecretStr("redis://h"),
    )  # fmt: skip


@pytest.fixture
def ctx() -> Iterator[TenantContext]:
    # One connection for every thread: the route runs the service in a worker thread.
    engine = sa.create_engine(
        "sqlite://", poolclass=sa.StaticPool, connect_args={"check_same_thread": False}
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            datasets.insert(),
            [
                {"id": d, "name": f"d{d}", "display_name": "x", "data_type": "IMAGE"}
                for d in (DATASET, OTHER_DATASET)
            ],
        )
        conn.execute(data_items.insert(), [row(i, *values) for i, values in ITEMS.items()])
        for item, (width, height) in SIZED.items():
            sized = data_items.update().where(data_items.c.id == item)
            conn.execute(sized.values(width=width, height=height))
        twin = row(
            99, "front/000001.jpg", FileKind.IMAGE, ItemStatus.PROCESSED, None, OTHER_DATASET
        )
        conn.execute(data_items.insert(), [twin])
        conn.execute(
            annotation_results.insert(),
            [
                {"data_item_id": item, "source": source, "version": 2, "object_count": 5,
                 "etag": f"etag-{item}-{source}"}
                for item, sources in ANNOTATED.items()
                for source in sources
            ],
        )  # fmt: skip
    yield TenantContext(TenantNames(tenant="acme"), connection(), engine, time.monotonic())
    engine.dispose()


def row(
    item: int,
    name: str,
    kind: FileKind | None,
    status: ItemStatus,
    reason: str | None,
    dataset: int = DATASET,
) -> dict[str, Any]:
    return {
        "id": item, "dataset_id": dataset, "name": name, "object_key": f"data/{dataset}/{item}",
        "content_type": "application/octet-stream", "size": 1000 + item, "kind": kind,
        "status": status, "status_reason": reason,
    }  # fmt: skip


def ids(ctx: TenantContext, **filters: Any) -> list[int]:
    page = list_items(ctx, SIGNER, DATASET, ItemFilter(**filters), limit=1000)
    return [item.id for item in page.items]


# -- cursors -------------------------------------------------------------------------------


@pytest.mark.parametrize("item", [1, 42, 2**63 - 1])
def test_a_cursor_round_trips_and_says_nothing_plainly(item: int) -> None:
    cursor = encode_cursor(item)
    assert decode_cursor(cursor) == item
    assert str(item) not in cursor and "=" not in cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "42",
        "not base64 !",
        base64.urlsafe_b64encode(b"item:0").decode(),
        base64.urlsafe_b64encode(b"item:-3").decode(),
        base64.urlsafe_b64encode(b"item:42\n").decode(),
        base64.urlsafe_b64encode(b"dataset:42").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_cursor_this_api_did_not_issue_is_refused(cursor: str) -> None:
    with pytest.raises(Invalid, match="not a cursor this API issued"):
        decode_cursor(cursor)


# -- pages and filters ----------------------------------------------------------------------


def test_pages_follow_each_other_in_id_order_without_gaps_or_repeats(ctx: TenantContext) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        page = list_items(ctx, SIGNER, DATASET, ItemFilter(), after=cursor, limit=3)
        seen += [item.id for item in page.items]
        pages += 1
        cursor = page.next
        if cursor is None:
            break
        assert len(page.items) == 3
    assert seen == sorted(ITEMS) and pages == 3, "another dataset's items are never listed"


def test_a_last_page_that_is_exactly_full_has_no_next(ctx: TenantContext) -> None:
    page = list_items(ctx, SIGNER, DATASET, ItemFilter(), limit=len(ITEMS))
    assert len(page.items) == len(ITEMS) and page.next is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"statuses": (ItemStatus.PROCESSED,)}, [10, 12, 15, 16]),
        ({"statuses": (ItemStatus.FAILED, ItemStatus.UNSUPPORTED)}, [13, 14]),
        ({"kinds": (FileKind.POINT_CLOUD,)}, [12, 13]),
        ({"kinds": (FileKind.IMAGE, FileKind.TEXT)}, [10, 11, 15]),
        ({"name_prefix": "lidar/"}, [12, 13]),
        ({"name_prefix": "100%_"}, [14]),  # % and _ are the characters, not wildcards
        ({"name_prefix": "100"}, [14, 15]),
        ({"has_annotations": True}, [10, 12]),
        ({"has_annotations": False}, [11, 13, 14, 15, 16]),
        ({"kinds": (FileKind.IMAGE,), "has_annotations": False}, [11]),
        (
            {"statuses": (ItemStatus.PROCESSED,), "name_prefix": "front/", "has_annotations": True},
            [10],
        ),
        ({"kinds": (FileKind.AUDIO,)}, []),
    ],
)
def test_filters_combine(ctx: TenantContext, filters: dict[str, Any], expected: list[int]) -> None:
    assert ids(ctx, **filters) == expected


def test_filters_and_pages_together(ctx: TenantContext) -> None:
    processed = ItemFilter(statuses=(ItemStatus.PROCESSED,))
    first = list_items(ctx, SIGNER, DATASET, processed, limit=3)
    second = list_items(ctx, SIGNER, DATASET, processed, after=first.next, limit=3)
    assert [i.id for i in first.items] == [10, 12, 15]
    assert [i.id for i in second.items] == [16] and second.next is None


def test_the_prefix_is_escaped_in_the_sql_mysql_runs() -> None:
    query = items_query(DATASET, ItemFilter(name_prefix="a%b_c"), after=5, limit=100)
    compiled = query.compile(dialect=mysql.dialect())
    sql = " ".join(str(compiled).split())
    # PyMySQL's paramstyle doubles a literal %; the prefix itself goes as a parameter.
    assert "data_items.name LIKE concat(%s, '%%') ESCAPE '/'" in sql
    assert "a/%b/_c" in compiled.params.values()
    assert "data_items.id > %s" in sql and 5 in compiled.params.values()
    assert sql.endswith("ORDER BY data_items.id LIMIT %s")
    assert compiled.params["param_1"] == 101, "one more row says whether a page follows"


def test_a_dataset_that_is_not_the_callers_is_not_found(ctx: TenantContext) -> None:
    with pytest.raises(NotFound, match="dataset 77 not found"):
        list_items(ctx, SIGNER, 77, ItemFilter())


# -- what each item carries -----------------------------------------------------------------


def listed(ctx: TenantContext) -> dict[int, Any]:
    return {i.id: i for i in list_items(ctx, SIGNER, DATASET, ItemFilter()).items}


def test_items_carry_their_state_and_annotation_sources(ctx: TenantContext) -> None:
    items = listed(ctx)
    failed = items[13]
    assert (failed.kind, failed.status, failed.status_reason) == (
        FileKind.POINT_CLOUD, ItemStatus.FAILED, "not a PCD file",
    )  # fmt: skip
    assert failed.size == 1013 and failed.derived == [] and failed.annotations == []
    assert [(a.source, a.etag, a.version, a.object_count) for a in items[10].annotations] == [
        ("camera", "etag-10-camera", 2, 5),
        ("lidar", "etag-10-lidar", 2, 5),
    ]


def test_images_carry_their_recorded_size_and_the_rest_none(ctx: TenantContext) -> None:
    items = listed(ctx)
    assert (items[10].width, items[10].height) == (64, 48)
    # A cloud has none; an image processed before sizes were recorded has none either.
    assert all((items[i].width, items[i].height) == (None, None) for i in (11, 12, 16))
    page = list_items(ctx, SIGNER, DATASET, ItemFilter()).model_dump(by_alias=True)
    assert {"width": 64, "height": 48}.items() <= page["items"][0].items()


def test_only_processed_items_have_derived_urls_named_as_the_worker_writes(
    ctx: TenantContext,
) -> None:
    items = listed(ctx)
    names = {item: [link.name for link in items[item].derived] for item in items}
    assert names[10] == ["thumb-200.jpg", "thumb-400.jpg", "thumb-800.jpg"]
    assert names[12] == ["cloud.pcd", "bev.png", "preview.pcd", "tiles/index.json"]
    assert names[15] == ["info.json"]
    assert names[16] == names[10], "an item without a recorded kind: classified by its name"
    assert names[11] == names[13] == names[14] == [], "not processed: nothing to sign"
    optional = {link.name for link in items[12].derived if link.optional}
    assert optional == {"preview.pcd", "tiles/index.json"}
    bev = next(link for link in items[12].derived if link.name == "bev.png")
    assert urlsplit(bev.url).path == f"/{BUCKET}/derived/12/bev.png"
    assert (bev.operation, bev.content_type) == ("render-bev", "image/png")


def test_a_pages_urls_are_signed_at_one_instant_and_expire_together(ctx: TenantContext) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    links = [link for item in listed(ctx).values() for link in item.derived]
    assert len({link.expires_at for link in links}) == 1
    expires = links[0].expires_at
    assert before + timedelta(minutes=15) <= expires <= datetime.now(UTC) + timedelta(minutes=15)
    assert all("X-Amz-Expires=900" in link.url for link in links)


def test_signed_urls_are_the_presigners_own(ctx: TenantContext) -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    links = sign_derived(SIGNER, BUCKET, [(12, FileKind.POINT_CLOUD, ItemStatus.PROCESSED)], now)
    expected = SIGNER.presign("GET", BUCKET, "derived/12/bev.png", timedelta(minutes=15), now)
    assert links[12][1].url == expected
    assert links[12][1].expires_at == now + timedelta(minutes=15)


# -- the route ------------------------------------------------------------------------------


def get(ctx: TenantContext, path: str) -> httpx.Response:
    """GET through the real app in-process, as this tenant (no token, no backends)."""
    app = create_app(api=ApiSettings())
    app.dependency_overrides[current_tenant] = lambda: ctx
    app.dependency_overrides[object_io] = lambda: type("IO", (), {"presigner": SIGNER})()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_the_route_parses_repeated_and_aliased_filters(ctx: TenantContext) -> None:
    response = get(
        ctx, f"/v1/datasets/{DATASET}/items?status=failed&status=unsupported&namePrefix=lidar/"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == [13] and body["next"] is None
    assert body["items"][0]["statusReason"] == "not a PCD file"
    annotated = get(ctx, f"/v1/datasets/{DATASET}/items?hasAnnotations=true&limit=1").json()
    assert [item["id"] for item in annotated["items"]] == [10]
    assert annotated["items"][0]["derived"][0]["expiresAt"].endswith("Z")
    rest = get(ctx, f"/v1/datasets/{DATASET}/items?hasAnnotations=true&after={annotated['next']}")
    assert [item["id"] for item in rest.json()["items"]] == [12]


@pytest.mark.parametrize(
    ("query", "where", "reason"),
    [
        ("limit=1001", "limit", "less than or equal to 1000"),
        ("limit=0", "limit", "greater than or equal to 1"),
        ("status=done", "status", "'uploading', 'uploaded'"),
        ("kind=mesh", "kind", "'pointcloud', 'image'"),
        ("hasAnnotations=maybe", "hasAnnotations", "valid boolean"),
    ],
)
def test_the_route_says_what_is_wrong_with_a_query(
    ctx: TenantContext, query: str, where: str, reason: str
) -> None:
    response = get(ctx, f"/v1/datasets/{DATASET}/items?{query}")
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][:2] == ["query", where]
    assert reason in problem["msg"]


def test_the_route_refuses_a_forged_cursor_and_an_unknown_dataset(ctx: TenantContext) -> None:
    forged = get(ctx, f"/v1/datasets/{DATASET}/items?after=42")
    assert forged.status_code == 422 and "not a cursor" in forged.json()["detail"]
    assert get(ctx, "/v1/datasets/77/items").status_code == 404
