"""The object side's history: a kept bench tenant whose bucket holds every sequence's documents.

The tenant is provisioned like any other (`TenantProvisioner.reconcile`, idempotent) and never
torn down: its name is recorded in the cache directory, and each run reconciles it again and
checks that its datasets and documents are still there (a wiped local stack means a rebuild).
Each sequence is a dataset of 300 items; the history's saves PUT their windows' documents in
the shared order (see annotation_history), 32 in flight, so a sequence's documents are spread
over the volume files as its rows are over the table. The documents' index rows
(`annotation_results`) are written as saves through the API would leave them: each document
is a revision (`history_revision`, fixed per item, so a rebuild or a re-ageing writes the key
the row names).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert

from annostack.adapters.objects import ObjectIO, Presigner
from annostack.adapters.tenant_tables import annotation_results, data_items, datasets
from annostack.services.annotations import document_key
from annostack.services.tenancy import TenantContext
from annostack.settings import Settings
from bench.annotation_history import (
    Layout,
    Progress,
    SideState,
    document_body,
    etag_of,
    in_batches,
    niced,
    re_age_saves,
)

SOURCE = "lidar"
IN_FLIGHT = 32  # PUTs at once while building: the API's own concurrency per batch
# The tenant's TiDB resource group: far above what the benchmark asks, so that the figures are
# the design's, not a plan's request-unit limit.
REQUEST_UNITS_PER_SECOND = 100_000


def stack_env() -> tuple[dict[str, str], dict[str, str]]:
    """The running stack's settings for clients and for the API: (client, API) environments.

    Not `Stack().up()`: from a worktree whose image inputs differ from the checkout that
    started the stack, `up` (and containerd's part of `client_env`) builds this tree's images
    and loads them into the shared node. The benchmark needs the servers, not the images: it
    takes every component's settings but containerd's (the default worker image, which no
    bench tenant runs — its workers scale to zero) and requires the stack to be up already.
    """
    from annostack.devstack.stack import Stack, State

    stack = Stack()
    down = [status.name for status in stack.status() if status.state != State.READY]
    if down:
        raise RuntimeError(f"the local stack is not up ({', '.join(down)}): annostack dev up")
    client = {"ANNOSTACK_ENVIRONMENT": "dev"}
    api: dict[str, str] = {}
    for component in stack.components:
        if component.name != "containerd":
            client.update(component.client_env())
            api.update(component.api_env())
    return client, {**client, **api}


@contextmanager
def kept_tenant(home: Path) -> Iterator[tuple[dict[str, str], Settings, TenantContext]]:
    """The bench tenant recorded in `home` (created on first use), reconciled; and the API's
    environment."""
    from annostack.domain.tenants import Plan, TenantSpec
    from annostack.services.tenancy import TenantDirectory
    from annostack.services.tenants import Backends, TenantProvisioner

    client_env, api_env = stack_env()
    os.environ.update(client_env)
    settings = Settings()
    record = home / "tenant"
    if not record.exists():
        home.mkdir(parents=True, exist_ok=True)
        record.write_text(f"annobench{uuid.uuid4().hex[:6]}\n")
    tenant = record.read_text().strip()
    provisioner = TenantProvisioner(Backends(settings))
    plan = Plan(request_units_per_second=REQUEST_UNITS_PER_SECOND, max_datasets=1000)
    spec = TenantSpec(display_name=tenant, plan=plan)
    deadline = time.monotonic() + 60
    # A new tenant's workers Deployment (0 replicas) is Ready once its rollout is observed.
    while not (report := provisioner.reconcile(tenant, spec)).ready:
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench tenant not ready: {[f.message for f in report.failures]}")
        time.sleep(1)
    directory = TenantDirectory(provisioner.b.kube, settings.db)
    try:
        yield api_env, settings, directory.get(tenant)
    finally:
        directory.close()
        provisioner.b.close()


def ensure_history(settings: Settings, ctx: TenantContext, home: Path, layout: Layout) -> SideState:
    """The object history of `layout` in the tenant's bucket: reused when intact, else built."""
    path = home / "objects.json"
    state = SideState.read(path)
    tenant = ctx.names.tenant
    intact = (
        state is not None
        and state.layout == layout
        and bool(state.built)
        and state.extra.get("tenant") == tenant
        and _still_there(settings, ctx, state)
    )
    if not intact or state is None:
        state = SideState(layout, extra={"tenant": tenant, "items": _sequences(ctx, layout)})
        saves = layout.saves()
        progress = Progress("documents, every pass (PUT)", len(saves) * layout.window)
        with niced():
            asyncio.run(_replay(settings, ctx, state, saves, progress))
        seconds = progress.finish()
        _record_index_rows(ctx, state)
        state.built = {"seconds": seconds, "documents": layout.sequences * layout.frames}
        state.write(path)
    if state.rewritten:
        saves = re_age_saves(layout, state.rewritten)
        progress = Progress(
            f"documents, re-ageing {len(state.rewritten)} sequences", len(saves) * layout.window
        )
        with niced():
            asyncio.run(_replay(settings, ctx, state, saves, progress))
        progress.finish()
        _record_index_rows(ctx, state)  # the run's saves moved the rows to their revisions
        state.rewritten = []
        state.write(path)
    return state


def items_of(state: SideState, sequence: int) -> list[int]:
    items: list[int] = state.extra["items"][sequence]
    return items


def _sequences(ctx: TenantContext, layout: Layout) -> list[list[int]]:
    """One dataset of `frames` items per sequence (found again if a build was interrupted)."""
    found = []
    with ctx.engine.begin() as conn:
        for sequence in range(layout.sequences):
            name = f"history-{sequence:04d}"
            row = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == name)).first()
            if row is None:
                created = conn.execute(
                    datasets.insert().values(name=name, display_name=name, data_type="POINT_CLOUD")
                )
                dataset = int(created.inserted_primary_key[0])  # type: ignore[index]
                conn.execute(data_items.insert(), [_item(dataset, f) for f in range(layout.frames)])
            else:
                dataset = row.id
            ids = conn.execute(
                sa.select(data_items.c.id)
                .where(data_items.c.dataset_id == dataset)
                .order_by(data_items.c.name)
            )
            found.append([int(r.id) for r in ids])
    return found


def _item(dataset: int, frame: int) -> dict[str, Any]:
    return {
        "dataset_id": dataset,
        "name": f"{frame:04d}.pcd",
        "object_key": f"data/{dataset}/{frame}.pcd",
        "content_type": "application/octet-stream",
        "size": 1,
        "status": "uploaded",
    }


async def _replay(
    settings: Settings,
    ctx: TenantContext,
    state: SideState,
    saves: list[tuple[int, int]],
    progress: Progress,
) -> None:
    """PUT the documents of `saves`, in order, IN_FLIGHT at a time."""
    layout, bucket = state.layout, ctx.connection.bucket
    limit = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as http:
        io = ObjectIO(Presigner(settings.s3), http)

        async def put(sequence: int, frame: int) -> None:
            body = document_body(frame)
            item = items_of(state, sequence)[frame]
            key = document_key(item, SOURCE, history_revision(item))
            written = await io.put(bucket, key, body)
            # The benchmark's editors hold ETags without loading first (as the API's clients
            # do after a save): they are the bodies' MD5s, which this checks.
            assert written.etag == etag_of(body), (written.etag, etag_of(body))
            limit.release()
            progress.add(1)

        tasks = []
        for sequence, first in saves:
            for frame in range(first, first + layout.window):
                await limit.acquire()
                tasks.append(asyncio.ensure_future(put(sequence, frame)))
        await asyncio.gather(*tasks)


def history_revision(item: int) -> str:
    """The revision the history keeps an item's document at (hex, as the API's are)."""
    return hashlib.sha256(f"history-{item}".encode()).hexdigest()[:24]


def _record_index_rows(ctx: TenantContext, state: SideState) -> None:
    """The documents' index rows, as the API's saves write them (version, count, ETag)."""
    layout = state.layout
    rows = [
        {
            "data_item_id": item,
            "source": SOURCE,
            "version": layout.passes,
            "object_count": layout.objects,
            "etag": etag_of(document_body(frame)),
            "revision": history_revision(item),
        }
        for sequence in range(layout.sequences)
        for frame, item in enumerate(items_of(state, sequence))
    ]
    with ctx.engine.begin() as conn:
        for batch in in_batches(rows, 2000):
            insert = mysql_insert(annotation_results).values(batch)
            conn.execute(
                insert.on_duplicate_key_update(
                    etag=insert.inserted.etag, revision=insert.inserted.revision
                )
            )


def _still_there(settings: Settings, ctx: TenantContext, state: SideState) -> bool:
    """The datasets' items are in the tenant's database and a sample of documents in the bucket."""
    layout = state.layout
    with ctx.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(annotation_results)).scalar()
    if count != layout.sequences * layout.frames:
        return False
    sample = [
        items_of(state, s)[f] for s in (0, layout.sequences - 1) for f in (0, layout.frames - 1)
    ]

    async def heads() -> list[Any]:
        async with aiohttp.ClientSession() as http:
            io = ObjectIO(Presigner(settings.s3), http)
            bucket = ctx.connection.bucket
            keys = [document_key(item, SOURCE, history_revision(item)) for item in sample]
            return [await io.head(bucket, key) for key in keys]

    return all(found is not None for found in asyncio.run(heads()))
