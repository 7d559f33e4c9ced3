"""The API both designs are measured behind: the product's app plus the row design's endpoints.

`python -m bench.annotation_server --port N` serves `annostack.apps.main.create_app()` — the
product's routes, middleware, authentication, rate limit and parse workers, as `annostack api
run` does — with two bench-only routes added: the row design's batch load and save, on
Xtreme1's table in the bench's MariaDB (`BENCH_ROWS_URL`). Both designs therefore answer on
the same server, behind the same token check, with the same process layout (the event loop
plus one parse process); the benchmark runs one design at a time, so the process's CPU over
an interval is that design's. Not in the product: this module is the peer.

The JSON work is the same on both sides where the designs allow it. Save: the body is parsed
and checked by the product's own `check_batch` in the parse process, then each document is
split into its objects, one row each. Load: each row's JSON is parsed and the documents are
assembled and encoded with orjson (the product streams stored bytes and parses nothing: that
is its design, not a handicap given to the peer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import defaultdict
from typing import Any

import orjson
import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import Field
from pymysql.constants import FIELD_TYPE
from pymysql.converters import conversions

from annostack.apps.deps import StateDep, TenantDep
from annostack.apps.main import create_app
from annostack.domain.annotations import BATCH_LIMIT, MAX_BATCH_BYTES, check_batch
from annostack.domain.models import CamelModel
from bench.annotation_history import CLASS_IDS
from bench.xtreme1_rows import DELETE_BY_DATA_IDS, HUMAN, INSERT_ROWS, SELECT_BY_DATA_IDS

router = APIRouter(prefix="/bench/rows", tags=["bench"])
# PyMySQL is pure Python and parses every DATETIME into a datetime, 18,000 per sequence —
# a cost of this driver, not of the design (JDBC does it in microseconds): left as text.
CONVERSIONS: dict[Any, Any] = {**conversions, FIELD_TYPE.DATETIME: str}
_engine: sa.Engine | None = None


def rows_engine() -> sa.Engine:
    """The pool to the row server: the same settings as the product's tenant pools."""
    global _engine  # one pool per process, made on first use
    if _engine is None:
        _engine = sa.create_engine(
            os.environ["BENCH_ROWS_URL"],
            pool_pre_ping=True,
            pool_recycle=3600,
            connect_args={"conv": CONVERSIONS},
        )
    return _engine


class RowsLoad(CamelModel):
    source: str
    item_ids: list[int] = Field(min_length=1, max_length=BATCH_LIMIT)


def select_rows(item_ids: list[int]) -> list[tuple[Any, ...]]:
    with rows_engine().connect() as conn:
        cursor = conn.connection.cursor()
        cursor.execute(SELECT_BY_DATA_IDS, (item_ids,))
        return list(cursor.fetchall())


def assemble(source: str, item_ids: list[int], rows: list[tuple[Any, ...]]) -> bytes:
    """The batch-load answer from rows: one document per item, its objects in row order."""
    objects: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        objects[row[2]].append(orjson.loads(row[4]))  # data_id, class_attributes
    results = [
        {"itemId": item, "status": 200, "document": {"objects": objects[item]}}
        if item in objects
        else {"itemId": item, "status": 404}
        for item in item_ids
    ]
    return orjson.dumps({"source": source, "results": results})


@router.post("/batch-load")
async def rows_load(ctx: TenantDep, body: RowsLoad) -> Response:
    rows = await asyncio.to_thread(select_rows, body.item_ids)
    answer = await asyncio.to_thread(assemble, body.source, body.item_ids, rows)
    return Response(answer, media_type="application/json")


def rows_of_batch(body: bytes) -> tuple[str, list[int], list[tuple[Any, ...]]]:
    """Parse and check a batch-save body as the product does, then one row per object."""
    source, entries = check_batch(body)
    rows = []
    for entry in entries:
        assert entry.document is not None, entry.error
        for obj in orjson.loads(entry.document.body)["objects"]:
            payload = orjson.dumps(obj).decode()
            rows.append((entry.item_id, CLASS_IDS.get(obj.get("classId"), 0), payload))
    return source, [entry.item_id for entry in entries], rows


def replace_rows(dataset: int, editor: int, item_ids: list[int], rows: list[Any]) -> None:
    """Xtreme1's save: every object of these items deleted and inserted, one transaction."""
    values = [(dataset, item, cls, payload, editor, *HUMAN) for item, cls, payload in rows]
    with rows_engine().begin() as conn:
        cursor = conn.connection.cursor()
        cursor.execute(DELETE_BY_DATA_IDS, (item_ids,))
        cursor.executemany(INSERT_ROWS, values)


@router.post("/batch-save", max_body_size=MAX_BATCH_BYTES)  # the product's batch limit
async def rows_save(
    ctx: TenantDep, state: StateDep, request: Request, dataset: int, editor: int = 1
) -> dict[str, object]:
    source, item_ids, rows = await state.offload.parse(await request.body(), rows_of_batch)
    await asyncio.to_thread(replace_rows, dataset, editor, item_ids, rows)
    counts: dict[int, int] = defaultdict(int)
    for item, _, _ in rows:
        counts[item] += 1
    results = [{"itemId": item, "status": 200, "objectCount": counts[item]} for item in item_ids]
    return {"source": source, "results": results}


def create_bench_app() -> FastAPI:
    app = create_app()
    app.include_router(router)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    uvicorn.run(
        "bench.annotation_server:create_bench_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        access_log=False,  # as `annostack api run`
        log_level="warning",
    )


if __name__ == "__main__":
    main()
