"""Push: end-to-end latency and loss through two API replicas, and the highest sustainable rate.

Set-up: two API replicas (`annostack api run --gateway user`, separate processes, as two pods),
2,000 STOMP clients spread over both (four load processes, `bench/push_load.py`), each
subscribed to its own user destination. This process publishes to Redis at a fixed rate, each
message to one user (round-robin), so one published message is one delivery; its body carries
the phase and the publish time. Latency is receipt time - publish time (one machine, one clock).

Phases of PHASE_SECONDS each at rising rates, through the target (10,000/s) and beyond, with a
pause between them for messages in flight. "Sustained" = no loss and p99 <= 100 ms. "Lost" =
published but not received by the end of the pause after its phase (so a phase that builds a
backlog of seconds counts its tail as lost, and the next phase starts behind).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import redis.asyncio as aioredis

from annostack.adapters.push import channel_for
from annostack.devstack.stack import Stack
from annostack.domain.push import Destination
from annostack.domain.tenants import DeletionPolicy, TenantSpec
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings
from bench.runner import CLOCK_TICKS, Figures, benchmark, process_cpu_seconds

CLIENTS = 2_000
LOAD_PROCESSES = 4
TARGET_RATE = 10_000
RATES = [2_000, 5_000, 7_500, TARGET_RATE, 12_500, 15_000, 20_000]
PHASE_SECONDS = 10.0
DRAIN_SECONDS = 5.0  # after a phase, for the last messages in flight
TICK_SECONDS = 0.005  # publish in batches this often (a pipeline of PUBLISH per batch)
P99_TARGET_MS = 100.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_replica(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    argv = [sys.executable, "-m", "annostack", "api", "run", "--host", "127.0.0.1"]
    replica = subprocess.Popen(
        [*argv, "--port", str(port), "--gateway", "user"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return replica, f"ws://127.0.0.1:{port}/v1/push"
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("an API replica did not start")


def _redis_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "redis-server"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _push_counters(ws_url: str) -> dict[str, float]:
    """The replica's own count of relayed messages and of messages dropped for slow clients."""
    base = ws_url.replace("ws://", "http://").removesuffix("/v1/push")
    counters = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(("annostack_push_relayed_total", "annostack_push_dropped_total{")):
            name, value = line.rsplit(" ", 1)
            counters[name] = float(value)
    return counters


def _start_load(urls: list[str], tenant: str, out_dir: Path) -> list[subprocess.Popen[str]]:
    share = CLIENTS // LOAD_PROCESSES
    loads = []
    for n in range(LOAD_PROCESSES):
        argv = [sys.executable, "-m", "bench.push_load", ",".join(urls), tenant]
        loads.append(
            subprocess.Popen(
                [*argv, str(n * share), str(share), str(out_dir / f"load{n}.npz")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for load in loads:
        assert load.stdout is not None
        if load.stdout.readline().strip() != "ready":
            raise RuntimeError("a load process failed to connect its clients")
    return loads


async def _publish_phase(client: aioredis.Redis, tenant: str, phase: int, rate: int) -> int:
    """Publish at `rate` per second for PHASE_SECONDS; return how many were published."""
    channels = [channel_for(str(Destination.user(tenant, f"u{i}"))) for i in range(CLIENTS)]
    started, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < PHASE_SECONDS:
        due = int(rate * elapsed) - sent
        if due > 0:
            at = time.time()
            async with client.pipeline(transaction=False) as pipe:
                for n in range(sent, sent + due):
                    body = orjson.dumps({"type": "bench", "phase": phase, "at": at, "n": n})
                    pipe.publish(channels[n % CLIENTS], body)
                await pipe.execute()
            sent += due
        await asyncio.sleep(TICK_SECONDS)
    return sent


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


class CpuMeter:
    """CPU cores used by each group of processes (and the whole machine) over an interval."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start()

    def _sample(self) -> dict[str, float]:
        sample = {name: sum(map(process_cpu_seconds, pids)) for name, pids in self.groups.items()}
        sample["machine_busy"], sample["machine_total"] = _machine_busy_seconds()
        return sample

    def start(self) -> None:
        self.began, self.wall = self._sample(), time.monotonic()

    def cores(self) -> dict[str, float]:
        now, elapsed = self._sample(), time.monotonic() - self.wall
        used = {name: (now[name] - self.began[name]) / elapsed for name in self.groups}
        busy = now["machine_busy"] - self.began["machine_busy"]
        used["machine_busy_fraction"] = busy / (now["machine_total"] - self.began["machine_total"])
        return {name: round(value, 2) for name, value in used.items()}


async def _run_phases(url: str, tenant: str, meter: CpuMeter) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(url)
    phases = []
    try:
        for phase, rate in enumerate(RATES):
            meter.start()
            wall = time.monotonic()
            sent = await _publish_phase(client, tenant, phase, rate)
            elapsed = time.monotonic() - wall
            achieved = round(sent / elapsed)
            phases.append(
                {"phase": phase, "rate": rate, "published": sent, "achieved_rate": achieved}
                | {"cpu_cores": meter.cores()}
            )
            await asyncio.sleep(DRAIN_SECONDS)
    finally:
        await client.aclose()
    return phases


def _latencies(out_dir: Path, phase: int) -> np.ndarray:
    parts = []
    for path in sorted(out_dir.glob("load*.npz")):
        with np.load(path) as data:
            if str(phase) in data:
                parts.append(data[str(phase)])
    return np.concatenate(parts) if parts else np.empty(0)


def _summarise(phase: dict[str, Any], latencies: np.ndarray) -> dict[str, Any]:
    received = len(latencies)
    p50, p99, worst = (
        (np.percentile(latencies, q) * 1000 for q in (50, 99, 100)) if received else (np.nan,) * 3
    )
    lost = phase["published"] - received
    return {
        **phase,
        "delivered": received,
        "lost": lost,
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(worst), 1),
        "sustained": lost == 0 and float(p99) <= P99_TARGET_MS,
    }


@benchmark("push")
def push_bench() -> Figures:
    stack = Stack()
    stack.up()
    os.environ.update(stack.client_env())
    settings = Settings()
    backends = Backends(settings)
    provisioner = TenantProvisioner(backends)
    tenant = f"pb{uuid.uuid4().hex[:6]}"
    provisioner.provision(tenant, TenantSpec(display_name=tenant))
    env = {**os.environ, "ANNOSTACK_API_GATEWAY": "user"}
    replicas = [_start_replica(env) for _ in range(2)]
    loads: list[subprocess.Popen[str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = Path(tmp)
            started = time.monotonic()
            loads = _start_load([url for _, url in replicas], tenant, out_dir)
            connect_seconds = time.monotonic() - started
            meter = CpuMeter(
                {
                    "replica_a": [replicas[0][0].pid],
                    "replica_b": [replicas[1][0].pid],
                    "load_generators": [load.pid for load in loads],
                    "publisher": [os.getpid()],
                    "redis": _redis_pids(),
                }
            )
            redis_url = settings.redis.url.get_secret_value()
            phases = asyncio.run(_run_phases(redis_url, tenant, meter))
            for load in loads:
                assert load.stdin is not None and load.stdout is not None
                load.stdin.write("stop\n")
                load.stdin.flush()
                load.stdout.readline()
            results = [_summarise(p, _latencies(out_dir, p["phase"])) for p in phases]
            counters = [_push_counters(url) for _, url in replicas]
    finally:
        processes: list[subprocess.Popen[Any]] = [*loads, *(replica for replica, _ in replicas)]
        for process in processes:
            process.kill()
            process.wait()
        provisioner.teardown(tenant, DeletionPolicy.DELETE)
        backends.close()
    sustained = [r["achieved_rate"] for r in results if r["sustained"]]
    return {
        "clients": CLIENTS,
        "replicas": 2,
        "connect_all_seconds": round(connect_seconds, 1),
        "phase_seconds": PHASE_SECONDS,
        "phases": results,
        "replica_counters_at_end": counters,
        "highest_sustained_rate": max(sustained) if sustained else 0,
    }
