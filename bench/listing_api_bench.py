"""A page of the item listing through the real API: `GET /v1/datasets/{id}/items?limit=100`,
answered by the API pod on the local node (through its NodePort, as a browser reaches it), for
pages of 100 processed items with an annotation document each: images (3 thumbnail URLs each)
and point clouds (4 derived URLs each). p50 and p95 over ROUNDS pages, one client.

Beside it, in the same run and process: the same page's signing alone (`sign_derived`, what
`bench/listing_bench.py` measures), so the figure splits into the URLs and the rest (the token
check, the page's two queries on TiDB, the response's JSON, the network hop into the pod).

No peer runs beside it: Xtreme1's data list is a Java service whose items carry no pre-signed
previews, and this machine cannot run it.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import annotation_results, data_items, datasets
from annostack.domain.items import FileKind, ItemStatus
from annostack.services.browsing import sign_derived
from annostack.services.tenancy import TenantContext, create_api_token, object_store_of
from bench.runner import Figures, benchmark

ROUNDS = 200
PAGE = 100
KINDS = {FileKind.IMAGE: "jpg", FileKind.POINT_CLOUD: "pcd"}


@benchmark("listing-api")
def listing_api_bench() -> Figures:
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import Stack
    from bench.runner import bench_tenant

    with bench_tenant("listing") as (_, ctx):
        platform = Platform(Stack())
        platform.deploy(platform.load_images())
        token = create_api_token(ctx, "bench")
        figures: Figures = {"page_items": PAGE, "rounds": ROUNDS}
        with httpx.Client(base_url=platform.api_url, timeout=30) as http:
            http.headers["Authorization"] = f"Bearer {token}"
            for kind in KINDS:
                figures[kind.value.lower()] = _one_kind(ctx, http, kind)
        figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    return figures


def _one_kind(ctx: TenantContext, http: httpx.Client, kind: FileKind) -> dict[str, Any]:
    dataset, items = _annotated_dataset(ctx, kind)
    path = f"/v1/datasets/{dataset}/items"
    first = http.get(path, params={"limit": PAGE})
    first.raise_for_status()
    page = first.json()["items"]
    assert len(page) == PAGE and all(item["derived"] for item in page), "a full page, signed"
    urls = sum(len(item["derived"]) for item in page)
    api = _percentiles(lambda: http.get(path, params={"limit": PAGE}).raise_for_status())
    signer = Presigner(object_store_of(ctx.connection))
    signed = [(item, kind, ItemStatus.PROCESSED) for item in items]
    bucket = ctx.connection.bucket
    signing = _percentiles(lambda: sign_derived(signer, bucket, signed, datetime.now(UTC)))
    return {"urls": urls, "api": api, "signing_alone": signing, "bytes": len(first.content)}


def _annotated_dataset(ctx: TenantContext, kind: FileKind) -> tuple[int, list[int]]:
    """A dataset of PAGE processed items of `kind`, each with one annotation document's row."""
    suffix = KINDS[kind]
    with ctx.engine.begin() as conn:
        values = {"name": f"list-{suffix}", "display_name": "list", "data_type": "IMAGE"}
        created = conn.execute(datasets.insert().values(**values)).inserted_primary_key
        assert created is not None
        dataset = int(created[0])
        conn.execute(
            data_items.insert(),
            [
                {"dataset_id": dataset, "name": f"{n:06d}.{suffix}", "object_key": f"data/{n}",
                 "content_type": "application/octet-stream", "size": 1,
                 "status": ItemStatus.PROCESSED, "kind": kind}
                for n in range(PAGE)
            ],
        )  # fmt: skip
        query = sa.select(data_items.c.id).where(data_items.c.dataset_id == dataset)
        items = sorted(int(row.id) for row in conn.execute(query))
        conn.execute(
            annotation_results.insert(),
            [
                {"data_item_id": item, "source": "lidar", "version": 1, "object_count": 30,
                 "etag": "x", "revision": None}
                for item in items
            ],
        )  # fmt: skip
    return dataset, items


def _percentiles(call: Any) -> dict[str, float]:
    call()  # warm: connections, the API's tenant cache, the day's signing key
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 2),
    }
