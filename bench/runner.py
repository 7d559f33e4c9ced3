"""A small benchmark runner: named benchmarks, JSON results with the conditions they ran under.

A benchmark is a function taking no arguments and returning a dict of figures (seconds, rates,
sizes, and the peer's figures side by side). The runner adds when, where and on what it ran,
and writes one JSON file per run to `bench/results/` (not committed; the figures worth keeping
go to docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Figures = dict[str, Any]
Benchmark = Callable[[], Figures]

RESULTS = Path(__file__).parent / "results"
REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    def register(function: Benchmark) -> Benchmark:
        REGISTRY[name] = function
        return function

    return register


def conditions() -> dict[str, Any]:
    """What the figures depend on: machine, Python, commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit or None,
    }


def run(names: list[str]) -> list[Path]:
    unknown = set(names) - REGISTRY.keys()
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {sorted(REGISTRY)}"
        )
    RESULTS.mkdir(exist_ok=True)
    written = []
    for name in names or sorted(REGISTRY):
        print(f"bench {name} …", flush=True)
        started = time.perf_counter()
        figures = REGISTRY[name]()
        result = {
            "benchmark": name,
            "conditions": conditions(),
            "wall_seconds": round(time.perf_counter() - started, 3),
            "figures": figures,
        }
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"{name}-{stamp}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
        print(f"→ {path}", flush=True)
        written.append(path)
    return written


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def fresh_operator(extra_env: dict[str, str]) -> tuple[Any, Any, int]:
    """Stack up, CRDs installed, a newly started operator: (stack, platform, operator pid)."""
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import Stack

    stack = Stack()
    stack.up()
    platform = Platform(stack)
    platform.install()
    platform.stop()
    return stack, platform, platform.start_operator(extra_env)


@contextmanager
def bench_tenant(prefix: str) -> Iterator[tuple[Any, Any]]:
    """Stack up, one freshly provisioned tenant: (settings, its TenantContext); removed after."""
    import uuid

    from annostack.devstack.stack import Stack
    from annostack.domain.tenants import DeletionPolicy, TenantSpec
    from annostack.services.tenancy import TenantDirectory
    from annostack.services.tenants import Backends, TenantProvisioner
    from annostack.settings import Settings

    stack = Stack()
    stack.up()
    os.environ.update(stack.client_env())
    settings = Settings()
    provisioner = TenantProvisioner(Backends(settings))
    tenant = f"{prefix}{uuid.uuid4().hex[:6]}"
    assert provisioner.reconcile(tenant, TenantSpec(display_name=tenant)).ready
    directory = TenantDirectory(provisioner.b.kube, settings.db)
    try:
        yield settings, directory.get(tenant)
    finally:
        directory.close()
        provisioner.teardown(tenant, DeletionPolicy.DELETE)
        provisioner.b.close()


def timed(function: Callable[[], object], rounds: int, digits: int = 2) -> dict[str, float]:
    """p50 and p95 of `rounds` calls, in milliseconds."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, digits),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))] * 1000, digits),
    }
