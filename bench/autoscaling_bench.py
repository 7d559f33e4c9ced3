"""Autoscaling: reaction to a burst of 10,000 queued items, return to the minimum, polling cost.

The operator runs as `annostack dev platform` runs it, with a 5 s scale interval. Times are
from the last message being queued (resp. the queue being emptied) until the Deployment's
`spec.replicas` shows it. Polling cost: operator CPU per scale pass with 100 active tenants.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pulsar
from kubernetes import client

from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
from bench.runner import Figures, benchmark, fresh_operator, process_cpu_seconds

BURST = 10_000
WINDOW_SECONDS = 10
TENANTS = 100
SCALE_INTERVAL = 5.0
CPU_WINDOW = 30.0


def _tenant(name: str, workers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Tenant",
        "metadata": {"name": name, "labels": {"annostack.io/bench": "autoscaling"}},
        "spec": {"displayName": name, "deletionPolicy": "Delete", "workers": workers},
    }


def _wait(condition: Any, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.1)
    return time.monotonic() - started


@benchmark("autoscaling")
def autoscaling_bench() -> Figures:
    stack, platform, pid = fresh_operator(
        {
            "ANNOSTACK_OPERATOR_SCALE_INTERVAL_SECONDS": str(SCALE_INTERVAL),
            "ANNOSTACK_OPERATOR_DRIFT_INTERVAL_SECONDS": "600",
        }
    )
    objects = client.CustomObjectsApi(platform.kube.api)
    apps = client.AppsV1Api(platform.kube.api)
    ready = lambda n: any(  # noqa: E731
        c["type"] == "Ready" and c["status"] == "True"
        for c in objects.get_cluster_custom_object(API_GROUP, API_VERSION, "tenants", n)
        .get("status", {})
        .get("conditions", [])
    )
    names = [f"scale-{i:03d}" for i in range(TENANTS)]
    workers = {"minReplicas": 0, "maxReplicas": 10, "targetBacklogPerReplica": 1000,
               "scaleDownStabilizationSeconds": WINDOW_SECONDS}  # fmt: skip
    try:
        for name in names:
            objects.create_cluster_custom_object(
                API_GROUP, API_VERSION, "tenants", _tenant(name, workers)
            )
        _wait(lambda: all(ready(n) for n in names), 900)

        cpu_before = process_cpu_seconds(pid)
        time.sleep(CPU_WINDOW)
        per_pass = (process_cpu_seconds(pid) - cpu_before) / (CPU_WINDOW / SCALE_INTERVAL)

        target = TenantNames(tenant=names[0])
        replicas = lambda: int(  # noqa: E731
            apps.read_namespaced_deployment("workers", target.namespace).spec.replicas
        )
        pulsar_client = pulsar.Client(stack.client_env()["ANNOSTACK_PULSAR__SERVICE_URL"])
        # Unbatched, as annostack's own producers send: Pulsar's backlog counts entries.
        producer = pulsar_client.create_producer(
            target.topic("thumbnails"), batching_enabled=False, max_pending_messages=BURST
        )
        for item in range(BURST):
            producer.send_async(b'{"tenant":"x","itemId":%d,"key":"data/1/x"}' % item, None)
        producer.flush()
        pulsar_client.close()
        up = _wait(lambda: replicas() == 10, 120)
        admin = stack.client_env()["ANNOSTACK_PULSAR__ADMIN_URL"]
        topic = f"/admin/v2/persistent/{target.pulsar_namespace}/thumbnails"
        httpx.post(f"{admin}{topic}/subscription/workers/skip_all").raise_for_status()
        down = _wait(lambda: replicas() == 0, 180)
    finally:
        for name in names:
            objects.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)
    return {
        "burst_messages": BURST,
        "scale_interval_seconds": SCALE_INTERVAL,
        "seconds_until_scale_reflects_backlog": round(up, 1),
        "target_up_seconds": 15,
        "stabilization_window_seconds": WINDOW_SECONDS,
        "seconds_from_empty_queue_to_minimum": round(down, 1),
        "target_down_seconds": f"window + 15 = {WINDOW_SECONDS + 15}",
        "tenants_polled": TENANTS,
        "operator_cpu_seconds_per_scale_pass": round(per_pass, 3),
        "operator_cpu_ms_per_tenant_per_pass": round(1000 * per_pass / TENANTS, 2),
    }
