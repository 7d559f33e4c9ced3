"""Limits against a hostile client (issue 13): what each attack costs the API process.

The API runs as `annostack api run`, its own process, on the local stack, so its memory is its
own; `BENCH_API_SOURCE=<checkout>` runs another checkout's API (the figures before a change).
One round each — these are bounds, not latencies:

* 1 GiB sent chunked (no Content-Length) to batch-save: the answer, how much the server read
  before answering, and the growth of the API's peak RSS;
* an 800,000-entry batch (50 MB): the answer and its size, how long it took, and `/healthz`
  latency probed every 50 ms meanwhile (worst and median);
* twenty unauthenticated 16 MiB WebSocket messages to the push endpoint at once: growth of
  the API's peak RSS;
* a 5 TiB upload's ticket: its size and how many part URLs it carries.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from annostack.apps.testing import (
    ApiProcess,
    api_process,
    children_of,
    memory_of,
    reset_peak,
    send_chunked,
)
from annostack.services.tenancy import create_api_token
from bench.runner import Figures, bench_tenant, benchmark

MiB = 2**20


@benchmark("limits")
def limits_bench() -> Figures:
    source = os.environ.get("BENCH_API_SOURCE")
    with bench_tenant("limits") as (_, ctx), tempfile.TemporaryDirectory() as scratch:
        auth = {"Authorization": f"Bearer {create_api_token(ctx, 'bench')}"}
        log = Path(scratch) / "api.log"
        with api_process(dict(os.environ), log, cwd=Path(source) if source else None) as api:
            return {
                "api_source": source or "this checkout",
                "chunked_1gib": _chunked(api, auth),
                "batch_800k": _huge_batch(api, auth),
                "push_20x16mib": _push_flood(api),
                "upload_5tib": _upload_ticket(api, auth),
            }


def _peak_mib(pid: int) -> float:
    return memory_of(pid)[1] / MiB


def _fresh_peak_mib(pid: int) -> float:
    reset_peak(pid)
    return _peak_mib(pid)


def _chunked(api: ApiProcess, auth: dict[str, str]) -> dict[str, Any]:
    before = _fresh_peak_mib(api.pid)
    started = time.perf_counter()
    status, body, sent = send_chunked(api.base_url, "/v1/annotations/batch-save", auth, 1024 * MiB)
    return {
        "status": status,
        "answer": body[:200].decode(errors="replace"),
        "mib_sent_before_the_answer": round(sent / MiB),
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_before_mib": round(before),
        "peak_rss_growth_mib": round(_peak_mib(api.pid) - before),
    }


def _huge_batch(api: ApiProcess, auth: dict[str, str]) -> dict[str, Any]:
    entry = {"itemId": 1, "ifNoneMatch": True, "document": {"objects": []}}
    body = orjson.dumps({"source": "lidar", "documents": [entry] * 800_000})
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=api.base_url, timeout=120) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/healthz")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

    before = _fresh_peak_mib(api.pid)
    prober = threading.Thread(target=probe)
    prober.start()
    started = time.perf_counter()
    response = api.http.post(
        "/v1/annotations/batch-save",
        content=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    took = time.perf_counter() - started
    done.set()
    prober.join()
    workers = children_of(api.pid)
    return {
        "body_mb": round(len(body) / 1e6, 1),
        "status": response.status_code,
        "answer_bytes": len(response.content),
        "answer": response.text[:200],
        "seconds": round(took, 2),
        "healthz_probes": len(latencies),
        "healthz_worst_seconds": round(max(latencies), 3),
        "healthz_median_seconds": round(statistics.median(latencies), 3),
        "parse_workers_peak_rss_mib": [round(_peak_mib(pid)) for pid in workers],
        "api_peak_rss_before_mib": round(before),
        "api_peak_rss_growth_mib": round(_peak_mib(api.pid) - before),
    }


def _push_flood(api: ApiProcess) -> dict[str, Any]:
    url = api.base_url.replace("http://", "ws://") + "/v1/push"
    answers: list[str] = []

    def flood(socket: ClientConnection) -> None:
        try:
            socket.send("x" * (16 * MiB))
            answers.append(str(socket.recv(30)).split("\n")[0])  # the server's STOMP answer
        except ConnectionClosed as closed:
            answers.append(f"closed {closed.rcvd.code if closed.rcvd else ''}".strip())
        except TimeoutError:
            answers.append("no answer")

    with contextlib.ExitStack() as connections:
        sockets = [connections.enter_context(ws_connect(url, open_timeout=10)) for _ in range(20)]
        before = _fresh_peak_mib(api.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=flood, args=(s,)) for s in sockets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    return {
        "answers": {answer: answers.count(answer) for answer in sorted(set(answers))},
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_before_mib": round(before),
        "peak_rss_growth_mib": round(_peak_mib(api.pid) - before),
    }


def _upload_ticket(api: ApiProcess, auth: dict[str, str]) -> dict[str, Any]:
    name = f"limits-{time.monotonic_ns()}"
    dataset = api.http.post(
        "/v1/datasets",
        json={"name": name, "displayName": name, "dataType": "POINT_CLOUD"},
        headers=auth,
    ).json()["id"]
    started = time.perf_counter()
    ticket = api.http.post(
        f"/v1/datasets/{dataset}/uploads",
        json={"name": "huge.las", "size": 5 * 2**40},
        headers=auth,
    )
    took = time.perf_counter() - started
    multipart = ticket.json()["multipart"]
    api.http.delete(f"/v1/items/{ticket.json()['itemId']}/upload", headers=auth)
    return {
        "status": ticket.status_code,
        "answer_bytes": len(ticket.content),
        "part_urls": len(multipart["parts"]),
        "part_count": multipart.get("partCount"),
        "seconds": round(took, 3),
    }
