"""Worker end-to-end throughput on the local stack: messages per second, one worker process.

Items are already in the bucket and their messages queued; the clock runs from the worker's
start until Redis counts every message processed (each: GET the source, write 3 thumbnails or
a converted cloud + BEV, acknowledge).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import orjson
import pulsar
import redis
from PIL import Image

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_tokens import client_authentication
from annostack.domain import keyspace
from annostack.domain.pointclouds import Field, PointCloud, write_pcd
from annostack.domain.tenant_stack import TenantConnection
from annostack.settings import Settings
from bench.runner import Figures, bench_tenant, benchmark

IMAGES = 150
CLOUDS = 50
CLOUD_POINTS = 100_000


def _jpeg() -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, size=(270, 480, 3), dtype=np.uint8)
    photo = Image.fromarray(pixels).resize((1920, 1080))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=90)
    return out.getvalue()


def _cloud() -> bytes:
    rng = np.random.default_rng(2)
    fields = [Field(n, 4, "F", 1) for n in ("x", "y", "z", "intensity")]
    cloud = PointCloud(fields, np.empty(0), CLOUD_POINTS)
    data = np.empty(CLOUD_POINTS, dtype=cloud.dtype)
    for name in ("x", "y", "z", "intensity"):
        data[name] = rng.normal(scale=40, size=CLOUD_POINTS).astype(np.float32)
    cloud.points = data
    return write_pcd(cloud, "binary")


@benchmark("worker")
def worker_bench() -> Figures:
    with bench_tenant("wb") as (settings, ctx):
        return _measure(settings, ctx.connection)


def _measure(settings: Settings, connection: TenantConnection) -> Figures:
    tenant = connection.tenant
    store = ObjectStoreAdmin(settings.s3).client
    token = connection.pulsar_token.get_secret_value()  # the tenant's role, as its workers
    client = pulsar.Client(
        connection.pulsar_service_url, authentication=client_authentication(token)
    )
    try:
        jobs = [("thumbnails", ".jpg", _jpeg())] * IMAGES + [
            ("pointclouds", ".pcd", _cloud())
        ] * CLOUDS
        producers = {
            topic: client.create_producer(f"persistent://{connection.pulsar_namespace}/{topic}")
            for topic in ("thumbnails", "pointclouds")
        }
        for item, (topic, suffix, body) in enumerate(jobs, start=1):
            key = f"data/1/{item}{suffix}"
            store.put_object(connection.bucket, key, io.BytesIO(body), len(body))
            producers[topic].send(orjson.dumps({"tenant": tenant, "itemId": item, "key": key}))
        counters = redis.Redis.from_url(connection.redis_url.get_secret_value())
        env = {**os.environ, **connection.to_env(), "ANNOSTACK_WORKER_PORT": "18790"}
        started = time.monotonic()
        worker = subprocess.Popen(
            [sys.executable, "-m", "annostack", "worker", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processed = keyspace.key(keyspace.Family.PROCESSING, tenant)
        try:
            while int(counters.hget(processed, "processed") or 0) < len(jobs):
                time.sleep(0.1)
                if time.monotonic() - started > 600:
                    raise RuntimeError("worker did not finish in 10 minutes")
            elapsed = time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    finally:
        client.close()
    return {
        "messages": len(jobs),
        "images_1920x1080": IMAGES,
        "clouds_100k_points": CLOUDS,
        "seconds_including_worker_start": round(elapsed, 1),
        "messages_per_second": round(len(jobs) / elapsed, 1),
    }
