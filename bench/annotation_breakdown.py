"""Where the milliseconds of a load and a save go, each part timed on its own, in-process.

Measured with the same servers and the same history, on fresh sequences, cold where the
endpoint figure is cold (caches evicted first), so the parts add up against the endpoints'
one-client p50s:

* (c) load: the row server alone (`SUM(LENGTH(...))` over the same rows: every page read,
  nothing sent), the pages it read from disk (Innodb_buffer_pool_reads), the driver's fetch
  of the 9,000 rows, the JSON assembly;
* (b) load: the item check on TiDB, the 300 GETs to SeaweedFS (32 in flight, cold and warm);
* (b) save: the product's parse and check of the body, step by step; 300 conditional and 300
  unconditional PUTs; the index rows on TiDB;
* (c) save: the parse into rows, the DELETE (cold) and the INSERT of 9,000 rows;
* the disk itself: random reads at queue depth 1 (a query's page reads) and 32 (the GETs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pymysql

from annostack.adapters.objects import ObjectIO, Presigner
from annostack.domain.annotations import (
    BatchSaveRequest,
    _check_entry,
    _lists_too_many_documents,
    check_batch,
    parse_json,
)
from annostack.services.annotation_index import Current, Move, indexed, move
from annostack.services.annotations import document_key, new_revision
from annostack.services.tenancy import TenantContext
from annostack.settings import Settings
from bench.annotation_clients import Sequence, save_body
from bench.annotation_history import document_body, etag_of
from bench.annotation_objects import history_revision
from bench.annotation_server import CONVERSIONS, assemble, rows_of_batch
from bench.xtreme1_rows import DELETE_BY_DATA_IDS, HUMAN, INSERT_ROWS, SELECT_BY_DATA_IDS

SOURCE = "lidar"
IN_FLIGHT = 32  # the API's object-store concurrency per batch
DISK_READS = 300
REPEAT = 3
PAD = re.compile(rb'"pad":"[0-9a-f]+"')
DIGITS_TO_LETTERS = bytes.maketrans(b"0123456789", b"ghijklmnop")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timed(work: Callable[[], object], repeat: int = 1) -> tuple[float, Any]:
    """Milliseconds of `work` (the median of `repeat` runs: CPU-only parts on a busy machine)."""
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        samples.append(time.perf_counter() - started)
    return ms(statistics.median(samples)), result


def settle(run: Any, limit_seconds: float = 300.0) -> dict[str, float]:
    """Wait for the disk to be quiet: dirty pages written back, the row server's purge done.

    Cold reads measured while the kernel writes back gigabytes (after a history was re-aged)
    or while InnoDB purges a million deleted rows measure that, not a load: 10 ms a page.
    """
    started = time.monotonic()
    while True:
        dirty = _meminfo_mib("Dirty") + _meminfo_mib("Writeback")
        history = run.rows_server.history_length()
        waited = time.monotonic() - started
        if (dirty < 64 and history < 1000) or waited > limit_seconds:
            return {"waited_s": round(waited, 1), "dirty_mib": dirty, "undo_history": history}
        time.sleep(2)


def _meminfo_mib(name: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def breakdown(run: Any, settings: Settings, ctx: TenantContext) -> dict[str, Any]:
    """Every part, with `run` (annotations_bench.Run) giving fresh sequences and eviction."""
    return {
        "settled": settle(run),
        "c_load": _rows_load(run, run.cold_for_load("rows")),
        "b_load": asyncio.run(_objects_load(run, settings, ctx, run.cold_for_load("objects"))),
        "b_save": asyncio.run(_objects_save(run, settings, ctx)),
        "c_save": _rows_save(run, run.cold_for_save("rows")),
        "disk": _disk(run, ctx),
    }


def _rows_load(run: Any, sequence: Sequence) -> dict[str, Any]:
    server = run.rows_server
    ids = sequence.item_ids
    only_server = SELECT_BY_DATA_IDS.replace(
        SELECT_BY_DATA_IDS.split(" FROM ")[0], "SELECT COUNT(*), SUM(LENGTH(class_attributes))"
    )
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        run.evict()
        before = server.status("Innodb_buffer_pool_reads")["Innodb_buffer_pool_reads"]
        cold_ms, _ = timed(lambda: (cur.execute(only_server, (ids,)), cur.fetchall()))
        pages = server.status("Innodb_buffer_pool_reads")["Innodb_buffer_pool_reads"] - before
        warm_ms, _ = timed(lambda: (cur.execute(only_server, (ids,)), cur.fetchall()))
    with (
        contextlib.closing(
            pymysql.connect(
                host="127.0.0.1",
                port=server.port,
                user="root",
                database="xtreme1",
                conv=CONVERSIONS,
            )
        ) as conn,
        conn.cursor() as cur,
    ):
        fetch_ms, fetched = timed(lambda: (cur.execute(SELECT_BY_DATA_IDS, (ids,)), cur.fetchall()))
    assemble_ms, answer = timed(lambda: assemble(SOURCE, ids, list(fetched[1])), REPEAT)
    return {
        "server_cold_ms": cold_ms,
        "pages_read_from_disk": pages,
        "ms_per_page_read": round((cold_ms - warm_ms) / max(pages, 1), 3),
        "server_warm_ms": warm_ms,
        "driver_fetch_warm_ms": fetch_ms,
        "driver_parse_ms": round(fetch_ms - warm_ms, 1),
        "json_assemble_ms": assemble_ms,
        "answer_mib": round(len(answer) / 2**20, 2),
    }


async def _objects_load(
    run: Any, settings: Settings, ctx: TenantContext, sequence: Sequence
) -> dict[str, Any]:
    bucket = ctx.connection.bucket
    keys = [document_key(i, SOURCE, history_revision(i)) for i in sequence.item_ids]
    item_check_ms, _ = timed(lambda: indexed(ctx, SOURCE, sequence.item_ids))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as http:
        io = ObjectIO(Presigner(settings.s3), http)
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def get(key: str) -> int:
            async with limit:
                return len((await io.get(bucket, key)).body)

        async def all_gets() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(get(key) for key in keys))
            return ms(time.perf_counter() - started)

        run.evict()
        cold = await all_gets()
        warm = await all_gets()
    return {"item_check_ms": item_check_ms, "gets_300_cold_ms": cold, "gets_300_warm_ms": warm}


async def _objects_save(run: Any, settings: Settings, ctx: TenantContext) -> dict[str, Any]:
    conditional, plain = run.cold_for_save("objects"), run.cold_for_save("objects")
    body = save_body(conditional)
    parts = _parse_parts(body)
    bucket = ctx.connection.bucket
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as http:
        io = ObjectIO(Presigner(settings.s3), http)
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def put(item: int, frame: int, condition: bool) -> str:
            """Over the history's object with If-Match (the design before revisions), or to a
            new revision's key, unconditional (the product's save)."""
            body = document_body(frame)
            if condition:
                key, if_match = document_key(item, SOURCE, history_revision(item)), etag_of(body)
            else:
                key, if_match = document_key(item, SOURCE, new_revision()), None
                fresh.append(key)
            async with limit:
                written = await io.put(bucket, key, body, if_match=if_match)
            return written.etag

        async def all_puts(sequence: Sequence, condition: bool) -> float:
            run.evict()
            started = time.perf_counter()
            await asyncio.gather(
                *(put(item, f, condition) for f, item in enumerate(sequence.item_ids))
            )
            return ms(time.perf_counter() - started)

        fresh: list[str] = []
        conditional_ms = await all_puts(conditional, True)
        plain_ms = await all_puts(plain, False)
        await io.discard(bucket, fresh)  # the rows still name the history's objects
    record_ms = _index_move_ms(ctx, conditional)
    return {
        **parts,
        "puts_300_conditional_ms": conditional_ms,
        "puts_300_unconditional_ms": plain_ms,
        "index_rows_tidb_ms": record_ms,
    }


def _index_move_ms(ctx: TenantContext, sequence: Sequence) -> float:
    """The compare-and-set of a batch save's 300 index rows, then put back as they were (the
    rows must keep naming the history's documents)."""
    found = indexed(ctx, SOURCE, sequence.item_ids)
    moves = [
        Move(item, found.current[item], new_revision(), etag_of(document_body(frame)), 30)
        for frame, item in enumerate(sequence.item_ids)
    ]
    moved_ms, versions = timed(lambda: move(ctx, SOURCE, moves))
    back = [
        Move(
            m.item_id, Current(m.revision, m.etag, versions[m.item_id]), was.revision, was.etag, 30
        )
        for m in moves
        for was in [found.current[m.item_id]]
    ]
    move(ctx, SOURCE, back)
    return moved_ms


def _parse_parts(body: bytes) -> dict[str, float]:
    """The product's check_batch, whole and step by step (as the parse process runs it)."""
    whole_ms, _ = timed(lambda: check_batch(body), REPEAT)
    count_ms, _ = timed(lambda: _lists_too_many_documents(body), REPEAT)
    parse_ms, value = timed(lambda: parse_json(body), REPEAT)
    model_ms, request = timed(lambda: BatchSaveRequest.model_validate(value), REPEAT)
    entries_ms, _ = timed(lambda: [_check_entry(entry) for entry in request.documents], REPEAT)
    # The pads are hex: runs of 20+ digits occur in them, each of which parse_json looks at (a
    # whole integer? in a string?) without parsing again; until it did, one sent the body
    # through the stdlib parser. The same body with its digits as letters shows what they cost.
    lettered = PAD.sub(lambda pad: pad.group(0).translate(DIGITS_TO_LETTERS), body)
    letters_ms, _ = timed(lambda: check_batch(lettered), REPEAT)
    return {
        "check_batch_ms": whole_ms,
        "check_batch_without_digit_runs_in_strings_ms": letters_ms,
        "of_which_count_documents_stdlib_json_ms": count_ms,
        "of_which_orjson_parse_and_integer_check_ms": parse_ms,
        "of_which_request_model_ms": model_ms,
        "of_which_documents_validate_and_encode_ms": entries_ms,
        "body_mib": round(len(body) / 2**20, 2),
    }


def _rows_save(run: Any, sequence: Sequence | None) -> dict[str, Any]:
    assert sequence is not None, "no sequence left to save"
    body = save_body(sequence)
    parse_ms, (_, ids, rows) = timed(lambda: rows_of_batch(body), REPEAT)
    values = [(sequence.dataset, item, cls, payload, 1, *HUMAN) for item, cls, payload in rows]
    server = run.rows_server
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        run.evict()
        before = server.status("Innodb_buffer_pool_reads")["Innodb_buffer_pool_reads"]
        delete_ms, _ = timed(lambda: cur.execute(DELETE_BY_DATA_IDS, (ids,)))
        pages = server.status("Innodb_buffer_pool_reads")["Innodb_buffer_pool_reads"] - before
        insert_ms, _ = timed(lambda: cur.executemany(INSERT_ROWS, values))
        commit_ms, _ = timed(conn.commit)
    return {
        "parse_into_rows_ms": parse_ms,
        "delete_cold_ms": delete_ms,
        "delete_pages_read_from_disk": pages,
        "insert_9000_rows_ms": insert_ms,
        "commit_ms": commit_ms,
    }


def _disk(run: Any, ctx: TenantContext) -> dict[str, Any]:
    """Random reads of the two designs' data files, after eviction (the device's latency)."""
    ibd = run.rows_server.datadir / "xtreme1" / "data_annotation_object.ibd"
    volumes = sorted(
        (Path(run.cached_files()[0]) / "data").glob(f"{ctx.connection.bucket}_*.dat"),
        key=lambda p: p.stat().st_size,
    )
    run.evict()
    figures = {"innodb_16k_o_direct_qd1": _random_reads(ibd, 16384, direct=True)}
    if volumes:
        figures["seaweedfs_26k_qd1"] = _random_reads(volumes[-1], 26624, direct=False)
    return figures


def _random_reads(path: Path, size: int, direct: bool) -> dict[str, float]:
    import mmap

    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    descriptor = os.open(path, flags)
    buffer = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT requires
    blocks = os.fstat(descriptor).st_size // size
    rng = random.Random(7)  # noqa: S311
    samples = []
    try:
        for _ in range(DISK_READS):
            offset = rng.randrange(blocks) * size
            started = time.perf_counter()
            os.preadv(descriptor, [buffer], offset)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(descriptor)
        buffer.close()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }
