"""A batch save's 300 PUTs with the object store on one core and on two (issue #16's split).

Issue #16's save target failed on this machine because SeaweedFS's CPU per request bounds the
300 PUTs of a batch save (0.55 CPU-s per save, about 540 ms of the 717 ms p50), on two cores
it shares with the API, the database and the client. The analysis in docs/benchmarks.md
extrapolates to an object store on cores of its own. This measures the premise the
extrapolation rests on, that the PUTs' latency is the store's CPU divided by the cores it
gets: the same 300 PUTs (the bench history's real documents, 32 in flight to new revision
keys, as the product's save sends them) with every thread of the `weed` process pinned to
core 1 (`taskset -a`), then allowed both; the client stays on core 0. Each round's wall time
and SeaweedFS's CPU seconds are recorded; affinity is restored afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from typing import Any

import aiohttp

from annostack.adapters.objects import ObjectIO, Presigner
from annostack.services.annotations import document_key, new_revision
from bench.annotation_history import document_body
from bench.runner import Figures, bench_tenant, benchmark, process_cpu_seconds

PUTS = 300
IN_FLIGHT = 32  # the API's object-store concurrency per batch
ROUNDS = 12
SOURCE = "lidar"


def _weed_pid() -> int:
    from annostack.devstack.stack import Stack

    pid_file = Stack().settings.state_dir / "seaweedfs.pid"
    return int(pid_file.read_text().split()[0])  # "pid starttime"


def _pin(pid: int, cpus: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", cpus, str(pid)], check=True, capture_output=True)


async def _round(io: ObjectIO, bucket: str, bodies: list[bytes], weed: int) -> dict[str, float]:
    limit = asyncio.Semaphore(IN_FLIGHT)
    keys = [document_key(item, SOURCE, new_revision()) for item in range(len(bodies))]

    async def put(key: str, body: bytes) -> None:
        async with limit:
            await io.put(bucket, key, body)

    cpu_before, started = process_cpu_seconds(weed), time.perf_counter()
    await asyncio.gather(*(put(key, body) for key, body in zip(keys, bodies, strict=True)))
    wall, cpu = time.perf_counter() - started, process_cpu_seconds(weed) - cpu_before
    await io.discard(bucket, keys)
    return {"wall_ms": wall * 1000, "seaweedfs_cpu_s": cpu}


async def _rounds(settings: Any, bucket: str, weed: int, cpus: str) -> list[dict[str, float]]:
    bodies = [document_body(frame) for frame in range(PUTS)]
    _pin(weed, cpus)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as http:
        io = ObjectIO(Presigner(settings.s3), http)
        await _round(io, bucket, bodies, weed)  # warm-up: connections, the volume's index
        return [await _round(io, bucket, bodies, weed) for _ in range(ROUNDS)]


def _summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    walls = sorted(r["wall_ms"] for r in rounds)
    cpu = statistics.median(r["seaweedfs_cpu_s"] for r in rounds)
    wall = statistics.median(walls)
    return {
        "puts_300_p50_ms": round(wall, 1),
        "puts_300_max_ms": round(walls[-1], 1),
        "seaweedfs_cpu_s_p50": round(cpu, 3),
        # How many cores' worth the store used while the PUTs ran: ~1.0 on one core means
        # it was bound by that core.
        "seaweedfs_cores_busy": round(cpu / (wall / 1000), 2),
    }


@benchmark("object-store-cores")
def object_store_cores_bench() -> Figures:
    weed = _weed_pid()
    every_cpu = f"0-{(os.cpu_count() or 1) - 1}"
    with bench_tenant("oc") as (settings, ctx):
        bucket = ctx.connection.bucket
        # The client (0.02 CPU-s per save) stays on core 0 in both runs.
        os.sched_setaffinity(0, {0})
        try:
            one = asyncio.run(_rounds(settings, bucket, weed, "1"))
            two = asyncio.run(_rounds(settings, bucket, weed, "0,1"))
        finally:
            _pin(weed, every_cpu)
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    figures: Figures = {"one_core": _summary(one), "two_cores": _summary(two)}
    speedup = figures["one_core"]["puts_300_p50_ms"] / figures["two_cores"]["puts_300_p50_ms"]
    figures["speedup_two_over_one"] = round(speedup, 2)
    figures["conditions"] = {"puts": PUTS, "in_flight": IN_FLIGHT, "rounds": ROUNDS}
    figures["rounds"] = {"one_core": one, "two_cores": two}
    return figures
