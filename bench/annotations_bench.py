"""The seed's case: a 300-frame sequence with 30 objects (~1 KB each) per frame.

Three ways to load and save it, same machine, same run:
  (a) pre-signed URLs from the API, fetched by a native client (curl) 6 at a time, as a
      browser does (6 connections per host);
  (b) the API's batch endpoints (one request for the whole sequence);
  (c) one row per object in the tenant's SQL database, the design the seed replaced: one IN
      query to load, DELETE + INSERT in one transaction to save.
Reported: p50/p95 for one client, and sequences per second with 16 concurrent clients.
Also the API's own work to issue the 300 URLs (in-process, no network).
"""

from __future__ import annotations

import concurrent.futures
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import orjson
import sqlalchemy as sa

from annostack.adapters.objects import Presigner
from annostack.adapters.tenant_tables import data_items, datasets
from annostack.apps.main import create_app
from annostack.apps.testing import serve
from annostack.services.annotations import presign_sequence
from annostack.services.tenancy import create_api_token
from annostack.settings import Settings
from bench import runner
from bench.runner import Figures, bench_tenant, benchmark

FRAMES = 300
OBJECTS = 30
ROUNDS = 10
CONCURRENT_CLIENTS = 16
SOURCE = "lidar"


def frame_document(frame: int) -> dict[str, Any]:
    return {
        "objects": [
            {
                "id": f"f{frame}-o{i}",
                "type": "3D_BOX",
                "classId": "car",
                "trackId": i,
                "contour": {
                    "center": [frame * 0.1 + i, i * 0.5, 0.8],
                    "size": [4.512, 1.873, 1.561],
                    "rotation": [0.0, 0.0, 0.0314 * i],
                },
                "attributes": {"occluded": i % 3 == 0, "truncated": False, "pad": "x" * 640},
            }
            for i in range(OBJECTS)
        ]
    }


def timed(function: Callable[[], object], rounds: int = ROUNDS) -> dict[str, float]:
    return runner.timed(function, rounds, digits=1)


def throughput(function: Callable[[], object], seconds: float = 10.0) -> float:
    """Sequences per second with CONCURRENT_CLIENTS clients doing `function` in a loop."""
    deadline = time.monotonic() + seconds
    done = 0

    def client() -> int:
        count = 0
        while time.monotonic() < deadline:
            function()
            count += 1
        return count

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
        done = sum(pool.map(lambda _: client(), range(CONCURRENT_CLIENTS)))
    return round(done / (time.monotonic() - started), 2)


def curl_parallel(urls: list[str], workdir: Path, upload: dict[str, Path] | None = None) -> None:
    """One curl process, 6 transfers at a time over reused connections, like a browser."""
    config = workdir / "curl.conf"
    lines = []
    for index, url in enumerate(urls):
        lines.append(f'url = "{url}"')
        if upload is not None:
            lines.append(f'upload-file = "{upload[url]}"')
        lines.append(f'output = "{workdir / f"out-{index}"}"')
    config.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [
            "curl",
            "--silent",
            "--fail",
            "--parallel",
            "--parallel-max",
            "6",
            "--config",
            str(config),
        ],
        check=True,
    )


class PresignedUrls(TypedDict):
    """One entry of the API's `/v1/annotations/presign` answer."""

    itemId: int  # the API's camelCase field
    get: str
    put: str


class RowPerObject:
    """The replaced design: one row per annotation object."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self.table = sa.Table(
            "bench_annotation_objects",
            sa.MetaData(),
            sa.Column("item_id", sa.BigInteger, primary_key=True),
            sa.Column("source", sa.String(64), primary_key=True),
            sa.Column("object_id", sa.String(64), primary_key=True),
            sa.Column("payload", sa.Text, nullable=False),
        )
        self.table.create(engine, checkfirst=True)

    def save(self, documents: dict[int, dict[str, Any]]) -> None:
        rows = [
            {"item_id": item, "source": SOURCE, "object_id": o["id"], "payload": json.dumps(o)}
            for item, doc in documents.items()
            for o in doc["objects"]
        ]
        with self.engine.begin() as conn:
            conn.execute(
                self.table.delete().where(
                    self.table.c.item_id.in_(list(documents)), self.table.c.source == SOURCE
                )
            )
            conn.execute(self.table.insert(), rows)

    def load(self, items: list[int]) -> dict[int, list[Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(self.table.c.item_id, self.table.c.payload).where(
                    self.table.c.item_id.in_(items), self.table.c.source == SOURCE
                )
            )
            out: dict[int, list[Any]] = {}
            for item, payload in rows:
                out.setdefault(item, []).append(json.loads(payload))
            return out


@benchmark("annotations")
def annotations_bench() -> Figures:
    with bench_tenant("bench") as (settings, ctx):
        return _run(settings, ctx, create_api_token(ctx, "bench"))


def _items(ctx: Any) -> list[int]:
    with ctx.engine.begin() as conn:
        dataset = conn.execute(
            datasets.insert().values(name="seq", display_name="seq", data_type="POINT_CLOUD")
        ).inserted_primary_key[0]
        conn.execute(
            data_items.insert(),
            [
                {
                    "dataset_id": dataset,
                    "name": f"{i:04d}.pcd",
                    "object_key": f"data/{dataset}/{i}.pcd",
                    "content_type": "application/octet-stream",
                    "size": 1,
                    "status": "uploaded",
                }
                for i in range(FRAMES)
            ],
        )
        rows = conn.execute(sa.select(data_items.c.id).where(data_items.c.dataset_id == dataset))
        return sorted(int(r.id) for r in rows)


def _run(settings: Settings, ctx: Any, token: str) -> Figures:
    items = _items(ctx)
    documents = {item: frame_document(n) for n, item in enumerate(items)}
    sizes = [len(orjson.dumps(d)) for d in documents.values()]
    auth = {"Authorization": f"Bearer {token}"}
    rows = RowPerObject(ctx.engine)
    workdir = Path(tempfile.mkdtemp(prefix="annostack-bench-"))
    files = {}
    for item, doc in documents.items():
        path = workdir / f"doc-{item}.json"
        path.write_bytes(orjson.dumps(doc))
        files[item] = path

    with serve(create_app(settings)) as api:
        batch_save: dict[str, Any] = {
            "source": SOURCE,
            "documents": [{"itemId": i, "document": d} for i, d in documents.items()],
        }
        # First save creates the documents (If-None-Match); later saves overwrite them as a
        # client that last loaded them would (If-Match with the ETags it got).
        first = api.post(
            "/v1/annotations/batch-save",
            json={
                **batch_save,
                "documents": [{**e, "ifNoneMatch": True} for e in batch_save["documents"]],
            },
            headers=auth,
        )
        assert all(r["status"] == 200 for r in first.json()["results"]), first.text[:300]

        # An editor keeps the ETags of what it loaded and gets new ones from every save, so a
        # save needs no load before it; the first save's results start the chain.
        current = {r["itemId"]: r["etag"] for r in first.json()["results"]}

        def batch_load() -> None:
            response = api.post(
                "/v1/annotations/batch-load",
                json={"source": SOURCE, "itemIds": items},
                headers=auth,
            )
            assert response.status_code == 200

        def batch_saving() -> None:
            body = {
                "source": SOURCE,
                "documents": [
                    {"itemId": i, "ifMatch": current[i], "document": d}
                    for i, d in documents.items()
                ],
            }
            response = api.post(
                "/v1/annotations/batch-save",
                content=orjson.dumps(body),
                headers={**auth, "Content-Type": "application/json"},
            )
            results = response.json()["results"]
            assert all(r["status"] == 200 for r in results)
            current.update({r["itemId"]: r["etag"] for r in results})

        def presigned_urls() -> list[PresignedUrls]:
            response = api.post(
                "/v1/annotations/presign", json={"source": SOURCE, "itemIds": items}, headers=auth
            )
            return list(response.json()["urls"])

        def presigned_load() -> None:
            curl_parallel([u["get"] for u in presigned_urls()], workdir)

        def presigned_save() -> None:
            urls = presigned_urls()
            curl_parallel(
                [u["put"] for u in urls], workdir, {u["put"]: files[u["itemId"]] for u in urls}
            )

        rows.save(documents)
        signer = Presigner(settings.s3)
        started = time.perf_counter()
        for _ in range(ROUNDS):
            presign_sequence(ctx, signer, items, SOURCE)
        api_presign_ms = (time.perf_counter() - started) / ROUNDS * 1000

        figures: Figures = {
            "frames": FRAMES,
            "objects_per_frame": OBJECTS,
            "document_bytes_median": int(statistics.median(sizes)),
            "load_one_client": {
                "a_presigned_curl_6": timed(presigned_load),
                "b_batch_endpoint": timed(batch_load),
                "c_row_per_object_sql": timed(lambda: rows.load(items)),
            },
            "save_one_client": {
                "a_presigned_curl_6": timed(presigned_save),
                "b_batch_endpoint": timed(batch_saving),
                "c_row_per_object_sql": timed(lambda: rows.save(documents)),
            },
            "load_sequences_per_second_16_clients": {
                "b_batch_endpoint": throughput(batch_load),
                "c_row_per_object_sql": throughput(lambda: rows.load(items)),
            },
            "api_presign_300_urls_ms": round(api_presign_ms, 2),
            "targets": {
                "a_load_vs_c": "<= 0.5x",
                "b_load_one_client_vs_c": "<= 1.0x",
                "b_throughput_vs_c": ">= 1.5x",
                "save_vs_c": "<= 0.3x",
                "api_presign_300_urls_ms": "<= 10",
            },
        }
    return figures
