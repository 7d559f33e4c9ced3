"""Autoscaling: reaction to a burst of 10,000 queued items, return to the minimum, polling cost.

A fresh operator process on the host (the in-cluster one paused), with a 5 s scale interval.
Times are from the last message being queued (resp. the queue being emptied) until the
Deployment's `spec.replicas` shows it. Polling cost: operator CPU per scale pass with 100
active tenants.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pulsar
from kubernetes import client

from annostack.adapters.pulsar_tokens import client_authentication
from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
from annostack.settings import Settings
from bench.runner import Figures, benchmark, fresh_operator, process_cpu_seconds, skip_backlog

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


def _wait(condition: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise RuntimeError("timed out")
        time.sleep(0.1)
    return time.monotonic() - started


class Cluster:
    """The reads the benchmark polls: a Tenant's Ready condition, the workers' replicas."""

    def __init__(self, api: client.ApiClient) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)

    def create(self, name: str, workers: dict[str, Any]) -> None:
        body = _tenant(name, workers)
        self.objects.create_cluster_custom_object(API_GROUP, API_VERSION, "tenants", body)

    def delete(self, name: str) -> None:
        self.objects.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)

    def ready(self, name: str) -> bool:
        tenant = self.objects.get_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)
        assert isinstance(tenant, dict)
        conditions = tenant.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def replicas(self, names: TenantNames) -> int:
        spec = self.apps.read_namespaced_deployment("workers", names.namespace).spec
        return (spec.replicas if spec is not None else None) or 0


def _burst(settings: Settings, names: TenantNames) -> None:
    """BURST messages on the tenant's thumbnails topic, with the operator's (admin) token."""
    pulsar_client = pulsar.Client(
        settings.pulsar.service_url,
        authentication=client_authentication(settings.pulsar.token.get_secret_value()),
    )
    try:
        # Unbatched, as annostack's own producers send: Pulsar's backlog counts entries.
        producer = pulsar_client.create_producer(
            names.topic("thumbnails"), batching_enabled=False, max_pending_messages=BURST
        )
        for item in range(BURST):
            producer.send_async(b'{"tenant":"x","itemId":%d,"key":"data/1/x"}' % item, None)
        producer.flush()
    finally:
        pulsar_client.close()


@benchmark("autoscaling")
def autoscaling_bench() -> Figures:
    env = {
        "ANNOSTACK_OPERATOR_SCALE_INTERVAL_SECONDS": str(SCALE_INTERVAL),
        "ANNOSTACK_OPERATOR_DRIFT_INTERVAL_SECONDS": "600",
    }
    with fresh_operator(env) as fresh:
        os.environ.update(fresh.stack.client_env())
        return _measure(Settings(), Cluster(fresh.platform.kube.api), fresh.operator.pid)


def _measure(settings: Settings, cluster: Cluster, pid: int) -> Figures:
    names = [f"scale-{i:03d}" for i in range(TENANTS)]
    workers = {"minReplicas": 0, "maxReplicas": 10, "targetBacklogPerReplica": 1000,
               "scaleDownStabilizationSeconds": WINDOW_SECONDS}  # fmt: skip
    try:
        for name in names:
            cluster.create(name, workers)
        _wait(lambda: all(cluster.ready(n) for n in names), 900)

        cpu_before = process_cpu_seconds(pid)
        time.sleep(CPU_WINDOW)
        per_pass = (process_cpu_seconds(pid) - cpu_before) / (CPU_WINDOW / SCALE_INTERVAL)

        target = TenantNames(tenant=names[0])
        _burst(settings, target)
        up = _wait(lambda: cluster.replicas(target) == 10, 120)
        skip_backlog(settings.pulsar, target, "thumbnails")
        down = _wait(lambda: cluster.replicas(target) == 0, 180)
    finally:
        for name in names:
            cluster.delete(name)
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
