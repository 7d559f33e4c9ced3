"""Operator: 50 tenants to Ready, RSS with 1,000 tenants, CPU of an idle drift pass.

A fresh operator process on the host, as the operator tests start it (the in-cluster one
paused meanwhile), so its CPU and RSS are its own, read from /proc.
For the RSS figure the extra 950 tenants are created paused: the operator watches, caches and
handles all 1,000 objects (kopf's memory grows with them) but provisions no backends for the
paused ones, so the figure is the operator's own cost, not 1,000 databases on one laptop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client

from annostack.domain.tenants import API_GROUP, API_VERSION
from bench.runner import Figures, benchmark, fresh_operator, process_cpu_seconds

ACTIVE = 50
TOTAL = 1000
DRIFT_INTERVAL_SECONDS = 10.0
IDLE_WINDOW_SECONDS = 60.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class TenantBatch:
    def __init__(self, api: client.CustomObjectsApi) -> None:
        self.api = api

    def create(self, name: str, paused: bool) -> None:
        spec: dict[str, Any] = {"displayName": name, "paused": paused, "deletionPolicy": "Delete"}
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "Tenant",
            "metadata": {"name": name, "labels": {"annostack.io/bench": "operator"}},
            "spec": spec,
        }
        self.api.create_cluster_custom_object(API_GROUP, API_VERSION, "tenants", body)

    def phases(self) -> dict[str, str | None]:
        listed = self.api.list_cluster_custom_object(
            API_GROUP, API_VERSION, "tenants", label_selector="annostack.io/bench=operator"
        )
        assert isinstance(listed, dict)  # the client types custom objects as `object`
        items: list[dict[str, Any]] = listed["items"]
        return {t["metadata"]["name"]: t.get("status", {}).get("phase") for t in items}

    def wait(self, names: list[str], phase: str, timeout: float) -> float:
        started = time.monotonic()
        while True:
            phases = self.phases()
            if all(phases.get(name) == phase for name in names):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                done = sum(phases.get(name) == phase for name in names)
                raise RuntimeError(f"only {done}/{len(names)} {phase} after {timeout}s")
            time.sleep(0.5)

    def delete_all(self) -> None:
        for name in self.phases():
            self.api.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)


@benchmark("operator")
def operator_bench() -> Figures:
    env = {"ANNOSTACK_OPERATOR_DRIFT_INTERVAL_SECONDS": str(DRIFT_INTERVAL_SECONDS)}
    with fresh_operator(env) as fresh:
        pid = fresh.operator.pid
        batch = TenantBatch(client.CustomObjectsApi(fresh.platform.kube.api))
        try:
            active = [f"bench-a{i:03d}" for i in range(ACTIVE)]
            started = time.monotonic()
            for name in active:
                batch.create(name, paused=False)
            batch.wait(active, "Ready", timeout=600)
            all_ready = time.monotonic() - started

            cpu_before = process_cpu_seconds(pid)
            time.sleep(IDLE_WINDOW_SECONDS)
            passes = IDLE_WINDOW_SECONDS / DRIFT_INTERVAL_SECONDS
            idle_cpu_per_pass = (process_cpu_seconds(pid) - cpu_before) / passes

            paused = [f"bench-p{i:04d}" for i in range(TOTAL - ACTIVE)]
            for name in paused:
                batch.create(name, paused=True)
            batch.wait(paused, "Paused", timeout=900)
            time.sleep(2 * DRIFT_INTERVAL_SECONDS)  # let every timer run at least once
            rss = _rss_mib(pid)
        finally:
            batch.delete_all()
    return {
        "tenants_to_ready": ACTIVE,
        "all_ready_seconds": round(all_ready, 1),
        "target_all_ready_seconds": 60,
        "idle_drift_pass_cpu_seconds": round(idle_cpu_per_pass, 2),
        "idle_drift_pass_cpu_ms_per_tenant": round(1000 * idle_cpu_per_pass / ACTIVE, 1),
        "drift_interval_seconds": DRIFT_INTERVAL_SECONDS,
        "tenants_watched_for_rss": TOTAL,
        "operator_rss_mib": round(rss, 1),
        "target_rss_mib": 300,
    }
