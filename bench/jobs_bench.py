"""ProcessingJob fan-out: how fast a 10,000-item dataset becomes queued messages.

Side by side in one run, over the same 10,000 items of one tenant:

* **batched** — what the operator does: items read in keyset batches of 500, each batch
  recorded as expected in Redis (one SADD), then sent asynchronously and flushed (one wait for
  the broker's acknowledgements per batch);
* **per message** — the straightforward peer: for each item one Redis SADD and one synchronous
  send that waits for its acknowledgement.

Also: the cost of one fold (reading the counts of a 10,000-item job from Redis).
"""

from __future__ import annotations

import time
import uuid

from annostack.adapters.tenant_tables import data_items
from annostack.domain.items import ProcessingMessage
from annostack.domain.processing import ProcessingJobSpec
from annostack.services.datasets import DatasetCreate, create_dataset
from annostack.services.jobs import JobRef, JobRunner, _candidates, _routed
from annostack.services.tenancy import TenantContext
from annostack.settings import Settings
from bench.runner import Figures, bench_tenant, benchmark, skip_backlog

ITEMS = 10_000
BATCH = 500


def _items(ctx: TenantContext, dataset_id: int) -> None:
    rows = [
        {
            "dataset_id": dataset_id,
            "name": f"cam/{n:05d}.jpg",
            "object_key": f"data/{dataset_id}/{n}.jpg",
            "content_type": "image/jpeg",
            "size": 1000,
            "status": "uploaded",
        }
        for n in range(ITEMS)
    ]
    with ctx.engine.begin() as conn:
        conn.execute(data_items.insert(), rows)


def _batched(runner: JobRunner, ctx: TenantContext, spec: ProcessingJobSpec) -> float:
    job = JobRef(ctx.names.tenant, f"bench-{uuid.uuid4().hex}")
    started = time.perf_counter()
    scope = runner.start(ctx, spec)
    cursor, finished, published = None, False, 0
    while not finished:
        step = runner.fan_out(ctx, job, spec, scope, cursor, BATCH)
        cursor, finished, published = step.last_item_id, step.finished, published + step.published
    elapsed = time.perf_counter() - started
    assert published == ITEMS, published
    return elapsed


def _per_message(runner: JobRunner, ctx: TenantContext, spec: ProcessingJobSpec) -> float:
    job = JobRef(ctx.names.tenant, f"bench-{uuid.uuid4().hex}")
    started = time.perf_counter()
    scope = runner.start(ctx, spec)
    assert scope.snapshot_item_id is not None
    rows = _candidates(ctx, scope.dataset_id, spec, 0, scope.snapshot_item_id, ITEMS)
    for route in _routed(rows, spec):
        runner.progress.expect(job.tenant, job.uid, [route.item_id])
        message = ProcessingMessage(
            tenant=job.tenant,
            item_id=route.item_id,
            key=route.key,
            kind=route.kind,
            job=job.uid,
            operations=route.operations,
        )
        runner.publisher.publish(ctx.names.topic(route.topic), message)
    return time.perf_counter() - started


@benchmark("jobs")
def jobs_bench() -> Figures:
    with bench_tenant("bench") as (settings, ctx):
        runner = JobRunner.for_settings(settings)
        try:
            return _measure(settings, ctx, runner)
        finally:
            runner.publisher.close()


def _measure(settings: Settings, ctx: TenantContext, runner: JobRunner) -> Figures:
    dataset = create_dataset(
        ctx, DatasetCreate(name="bench", display_name="bench", data_type="IMAGE")
    )
    _items(ctx, dataset.id)
    spec = ProcessingJobSpec(dataset="bench", operations=["thumbnail"])
    batched = _batched(runner, ctx, spec)
    skip_backlog(settings.pulsar, ctx.names, "thumbnails")
    per_message = _per_message(runner, ctx, spec)
    skip_backlog(settings.pulsar, ctx.names, "thumbnails")
    job = JobRef(ctx.names.tenant, f"bench-{uuid.uuid4().hex}")
    runner.progress.expect(job.tenant, job.uid, range(1, ITEMS + 1))
    started = time.perf_counter()
    runner.progress.counts(job.tenant, job.uid)
    fold_ms = (time.perf_counter() - started) * 1000
    return {
        "items": ITEMS,
        "batch": BATCH,
        "batched_seconds": round(batched, 2),
        "batched_messages_per_second": round(ITEMS / batched),
        "per_message_seconds": round(per_message, 2),
        "per_message_messages_per_second": round(ITEMS / per_message),
        "speedup": round(per_message / batched, 1),
        "fold_10k_item_job_ms": round(fold_ms, 2),
    }
