"""Exports at the issue's scale: scenes of 300 frames x 30 objects, 1,000 and 10,000 frames
(ANNOSTACK_BENCH_EXPORT_FRAMES, e.g. "1000,10000,100000"), to Xtreme1 JSON and to KITTI
(ANNOSTACK_BENCH_EXPORT_FORMATS, e.g. "xtreme1", to run fewer).

Each export runs in a child process exactly as a worker runs it (`write_export` over the
keyset pages of `units_of`, documents read from the tenant's bucket, the archive streamed into
a multipart upload) so that its peak RSS (the child's own VmHWM) is the export's alone; a child
that only imports and connects gives the baseline. Flat RSS across sizes is the claim that an
export of 100,000 items does not hold them in memory.

No peer runs beside it: Xtreme1's export is a Java service over its row table, which this
machine cannot run; the figures are absolute (frames/s, objects/s, MiB).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from annostack.adapters.tenant_tables import (
    annotation_results,
    data_items,
    datasets,
    frame_images,
    frames,
    scenes,
)
from bench.annotation_history import frame_objects
from bench.runner import Figures, bench_tenant, benchmark

FRAMES_PER_SCENE = 300
DEFAULT_SIZES = (1_000, 10_000)
# "+tar.gz": the same export as a tar.gz, whose writer keeps nothing per entry (a ZIP's keeps
# each entry's central-directory record until the end).
FORMATS = ("xtreme1", "xtreme1+tar.gz", "kitti")
SOURCE = "lidar"
WRITERS = 16  # concurrent PUTs while the documents are written
CAMERA = {  # one camera per frame, so KITTI has a calibration to convert boxes with
    "intrinsics": {"fx": 721.5, "fy": 721.5, "cx": 609.6, "cy": 172.9},
    "extrinsics": [0, -1, 0, 0, 0, 0, -1, -0.08, 1, 0, 0, -0.27, 0, 0, 0, 1],
    "width": 1242,
    "height": 375,
}


def sizes() -> list[int]:
    wanted = os.environ.get("ANNOSTACK_BENCH_EXPORT_FRAMES")
    return sorted(int(n) for n in wanted.split(",")) if wanted else list(DEFAULT_SIZES)


def formats() -> list[str]:
    """ANNOSTACK_BENCH_EXPORT_FORMATS (e.g. "xtreme1"): fewer formats for a long run."""
    wanted = os.environ.get("ANNOSTACK_BENCH_EXPORT_FORMATS")
    chosen = wanted.split(",") if wanted else list(FORMATS)
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise SystemExit(f"unknown export formats {unknown}; choose from {', '.join(FORMATS)}")
    return chosen


@benchmark("export")
def export_bench() -> Figures:
    with bench_tenant("export") as (_, ctx):
        dataset = _new_dataset(ctx)
        figures: Figures = {"objects_per_frame": 30, "frames_per_scene": FRAMES_PER_SCENE}
        baseline = _child(ctx.names.tenant, dataset, "none")
        figures["baseline_rss_mib"] = baseline["vm_hwm_mib"]
        have = 0
        for size in sizes():
            started = time.monotonic()
            _add_frames(ctx, dataset, have, size)
            print(f"export bench: {size:,} frames stored in {time.monotonic() - started:.0f} s")
            have = size
            for name in formats():
                result = _child(ctx.names.tenant, dataset, name)
                print(f"export bench: {name} of {size:,} frames: {result}")
                figures[f"{name.replace('+', '_')}_{size}_frames"] = result
    return figures


def _new_dataset(ctx: Any) -> int:
    with ctx.engine.begin() as conn:
        values = {"name": "drive", "display_name": "drive", "data_type": "POINT_CLOUD_SEQUENCE"}
        return int(conn.execute(datasets.insert().values(**values)).inserted_primary_key[0])


def _add_frames(ctx: Any, dataset: int, start: int, stop: int) -> None:
    """Frames start..stop-1: rows for items, scenes, frames, camera images and annotation
    documents, and the documents themselves in the bucket (16 PUTs at a time)."""
    for first in range(start, stop, FRAMES_PER_SCENE):
        last = min(first + FRAMES_PER_SCENE, stop)
        items = _add_scene(ctx, dataset, first, last)
        _put_documents(ctx, items, first)
        if (last - start) % 3_000 < FRAMES_PER_SCENE:
            print(f"export bench: {last - start:,} of {stop - start:,} frames written")


def _add_scene(ctx: Any, dataset: int, first: int, last: int) -> list[int]:
    with ctx.engine.begin() as conn:
        scene = conn.execute(
            scenes.insert().values(
                dataset_id=dataset,
                # Named by its first frame: a later size's scenes continue where the last ended
                # (the 1,000 frames' last scene is 100 frames long), never reusing a name.
                name=f"scene_{first:06d}",
                layout="xtreme1",
                frame_count=last - first,
            )
        ).inserted_primary_key[0]
        clouds = _items(conn, dataset, [f"lidar/{n:06d}.pcd" for n in range(first, last)])
        photos = _items(conn, dataset, [f"camera/{n:06d}.jpg" for n in range(first, last)])
        conn.execute(
            frames.insert(),
            [
                {"scene_id": scene, "idx": n - first, "name": f"{n:06d}", "point_cloud_item_id": i}
                for n, i in zip(range(first, last), clouds, strict=True)
            ],
        )
        frame_ids = [
            int(row.id)
            for row in conn.execute(
                sa.select(frames.c.id).where(frames.c.scene_id == scene).order_by(frames.c.idx)
            )
        ]
        conn.execute(
            frame_images.insert(),
            [
                {
                    "frame_id": f,
                    "camera": "camera_image_0",
                    "data_item_id": p,
                    "calibration": CAMERA,
                }
                for f, p in zip(frame_ids, photos, strict=True)
            ],
        )
        conn.execute(
            annotation_results.insert(),
            [
                {"data_item_id": i, "source": SOURCE, "version": 1, "object_count": 30, "etag": "x"}
                for i in clouds
            ],
        )
    return clouds


def _items(conn: sa.Connection, dataset: int, names: list[str]) -> list[int]:
    conn.execute(
        data_items.insert(),
        [
            {
                "dataset_id": dataset,
                "name": name,
                "object_key": f"data/{dataset}/{name}",
                "content_type": "application/octet-stream",
                "size": 1,
                "status": "processed",
            }
            for name in names
        ],
    )
    rows = conn.execute(
        sa.select(data_items.c.id, data_items.c.name).where(
            data_items.c.dataset_id == dataset, data_items.c.name.in_(names)
        )
    )
    ids = {str(row.name): int(row.id) for row in rows}
    return [ids[name] for name in names]


def _put_documents(ctx: Any, items: list[int], first: int) -> None:
    from annostack.adapters.objects import Presigner
    from annostack.services.annotations import document_key
    from annostack.services.tenancy import object_store_of

    signer = Presigner(object_store_of(ctx.connection))
    bucket = ctx.connection.bucket
    keys = [document_key(item, SOURCE) for item in items]
    urls = signer.presign_all("PUT", bucket, keys)
    bodies = [orjson.dumps({"objects": frame_objects(first + n)}) for n in range(len(items))]
    with httpx.Client(timeout=60) as http, concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        answers = list(
            pool.map(lambda p: http.put(p[0], content=p[1]), zip(urls, bodies, strict=True))
        )
    assert all(answer.status_code == 200 for answer in answers), answers[0].text


def _child(tenant: str, dataset: int, name: str) -> dict[str, Any]:
    """Run one export in a child process; its figures and peak RSS."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.export_bench", tenant, str(dataset), name], stdout=out
        )
        _, status = os.waitpid(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 0, f"the {name} export exited {process.returncode}"
        out.seek(0)
        result: dict[str, Any] = json.loads(out.read())
    return result


def _export(tenant: str, dataset: int, name: str) -> dict[str, Any]:
    """The child: one export of the dataset, as workers.export runs it."""
    from annostack.adapters.kube import Kube
    from annostack.adapters.multipart import multipart_upload
    from annostack.adapters.objects import Presigner
    from annostack.domain.processing import ExportSpec
    from annostack.services.exports import (
        content_type,
        count_units,
        units_of,
        write_export,
    )
    from annostack.services.tenancy import TenantDirectory, object_store_of
    from annostack.settings import Settings
    from annostack.workers.export import BucketDocuments

    settings = Settings()
    ctx = TenantDirectory(Kube(settings.kubernetes), settings.db).get(tenant)
    signer = Presigner(object_store_of(ctx.connection))
    if name == "none":
        return {"vm_hwm_mib": _peak_rss_mib()}
    export_format, _, archive = name.partition("+")
    options: dict[str, Any] = {"classes": {"car": "Car"}} if export_format == "kitti" else {}
    if archive:
        options["archive"] = archive
    spec = ExportSpec.model_validate({"format": export_format, "source": SOURCE, **options})
    bucket, key = ctx.connection.bucket, f"exports/bench-{export_format}-{time.time_ns()}"
    units = count_units(ctx, dataset, spec)
    started = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        documents = BucketDocuments(signer, http, bucket)
        with multipart_upload(signer, http, bucket, key, content_type(spec)) as upload:
            report = write_export(spec, units_of(ctx, dataset, spec), documents, upload)
        seconds = time.perf_counter() - started
        size = int(http.head(signer.presign_head(bucket, key)).headers["content-length"])
        http.delete(signer.presign("DELETE", bucket, key))  # not kept: 100s of MiB each
    objects = sum(f.objects for f in report.formats.values())
    return {
        "frames": units,
        "objects": objects,
        "seconds": round(seconds, 2),
        "frames_per_second": round(units / seconds, 1),
        "objects_per_second": round(objects / seconds),
        "archive_mib": round(size / 2**20, 1),
        "vm_hwm_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not `wait4`'s ru_maxrss in the parent: Linux carries
    the parent's RSS at fork over exec into the child's maximum, so that figure was the bench
    process's own size (which grows with the frames it wrote), the same for every format."""
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kib) / 1024, 1)


def _traced(export: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """With ANNOSTACK_BENCH_EXPORT_TRACE=1: the export under tracemalloc, and what it still held
    at the end by line (stderr), to tell memory that grows with the export from what does not.
    Slower: its figures are for that question only."""
    if os.environ.get("ANNOSTACK_BENCH_EXPORT_TRACE") != "1":
        return export()
    tracemalloc.start()
    result = export()
    held = tracemalloc.take_snapshot().statistics("lineno")[:8]
    print("\n".join(str(line) for line in held), file=sys.stderr)
    result["traced_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    return result


if __name__ == "__main__":
    tenant_name, dataset_id, format_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(_traced(lambda: _export(tenant_name, dataset_id, format_name))))
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown racing the Pulsar and Arrow threads an import starts
