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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the benchmarks without a stack start quickly
    from annostack.devstack.host_operator import OperatorProcess
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import Stack
    from annostack.domain.tenants import TenantNames
    from annostack.settings import PulsarSettings

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


@dataclass(frozen=True)
class FreshOperator:
    """What an operator benchmark gets: the stack, the platform, and its own host operator."""

    stack: Stack
    platform: Platform
    operator: OperatorProcess


@contextmanager
def fresh_operator(extra_env: dict[str, str]) -> Iterator[FreshOperator]:
    """Stack up, CRDs installed, a newly started host operator; the in-cluster one paused.

    A process on the host, as the operator tests run it, so its CPU and memory can be read
    from /proc; with the stack's admin kubeconfig, since the figures are the operator's cost,
    not its RBAC's. The in-cluster operator is given back however the benchmark ends.
    """
    from annostack.devstack.console import say
    from annostack.devstack.host_operator import OperatorProcess
    from annostack.devstack.platform import Platform, install_crds
    from annostack.devstack.stack import Stack

    stack = Stack()
    stack.up()
    platform = Platform(stack)
    install_crds(platform.kube)
    ports = stack.settings.ports
    log = stack.settings.state_dir / "logs" / "bench-operator.log"
    log.unlink(missing_ok=True)  # one run's output: the benchmark's, not the previous one's
    env = {**os.environ, **stack.client_env(), **extra_env}
    operator = OperatorProcess(env, log, ports.operator_health, ports.operator_metrics)
    with platform.operator_paused():
        say(f"  starting the benchmark's operator (log: {log})")
        operator.start()
        try:
            yield FreshOperator(stack, platform, operator)
        finally:
            operator.stop()


def skip_backlog(settings: PulsarSettings, names: TenantNames, topic: str) -> None:
    """Empty the workers' subscription on one of a tenant's topics (with the admin's token)."""
    from annostack.adapters.pulsar_admin import PulsarAdmin
    from annostack.domain.tenants import WORKER_SUBSCRIPTION

    path = f"/persistent/{names.pulsar_namespace}/{topic}/subscription/{WORKER_SUBSCRIPTION}"
    admin = PulsarAdmin(settings)
    try:
        admin.http.post(f"{path}/skip_all").raise_for_status()
    finally:
        admin.close()


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
    provisioner.provision(tenant, TenantSpec(display_name=tenant))
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
