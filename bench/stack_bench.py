"""The local stack: how long `up` takes on a running stack, and each readiness probe's latency.

`up` is called by every test session and by `make dev`, so its warm cost is paid constantly.
"""

from __future__ import annotations

import statistics
import time

from annostack.devstack.stack import Stack
from bench.runner import Figures, benchmark

PROBE_ROUNDS = 20


@benchmark("stack")
def stack_startup() -> Figures:
    stack = Stack()
    started = time.perf_counter()
    stack.up()
    first_up = time.perf_counter() - started
    started = time.perf_counter()
    stack.up()
    warm_up = time.perf_counter() - started
    probes = {}
    for component in stack.components:
        samples = []
        for _ in range(PROBE_ROUNDS):
            t = time.perf_counter()
            assert component.probe(), f"{component.name} not ready"
            samples.append(time.perf_counter() - t)
        probes[component.name] = round(statistics.median(samples) * 1000, 2)
    return {
        "first_up_seconds": round(first_up, 2),
        "warm_up_seconds": round(warm_up, 3),
        "probe_median_ms": probes,
    }
