"""The local node: how fast a backlog gets a worker pod, how fast it goes away, what idling costs.

Each of `RUNS` rounds uploads one JPEG through the API's Service to a tenant whose workers
scale from 0 (`minReplicas 0`, the in-cluster operator's 5 s scale pass), then watches, every
0.1 s, for each step between the upload's `complete` (the backlog appears) and the first worker
pod Ready: the operator's decision (Deployment `spec.replicas`), the pod object, its
scheduling, its container running, Ready. Then the item processed, and the pods back to 0.

The peer is KEDA, in the same run: its operator and metrics adapter (built from
`github.com/kedacore/keda/v2`, `annostack.devstack.keda`) are started, the operator hands a
second tenant to a ScaledObject (Pulsar scaler, `pollingInterval` 5 s as the operator writes
it), and the same rounds are measured; then KEDA is removed again. KEDA's own default
`pollingInterval` (30 s) would wait half of it on average before the same pod start: that
figure is modelled from the measured pod start, and labelled so.

Idle cost: CPU seconds and RSS of kubelet, containerd (with its shims) and kube-proxy over
`IDLE_SECONDS` with only the platform's own pods (operator, API, CoreDNS) running.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from kubernetes import client
from PIL import Image

from bench.runner import Figures, benchmark, process_cpu_seconds

if TYPE_CHECKING:
    from annostack.devstack.platform import Platform

RUNS = 10
IDLE_SECONDS = 60.0
POLL = 0.1
KEDA_POLLING_INTERVAL = 30.0  # KEDA's default `pollingInterval`
NODE_PROCESSES = ("kubelet", "containerd", "kube-proxy")
STEPS = ("decided", "pod_created", "scheduled", "running", "ready")
WORKERS = {
    "minReplicas": 0,
    "maxReplicas": 1,
    "targetBacklogPerReplica": 100,
    # Long enough that the pod is not scaled away before it is Ready: one JPEG is processed
    # within a second of the worker subscribing, the readiness probe passes up to 10 s later.
    "scaleDownStabilizationSeconds": 30,
}
PLAN = {"workerCpu": "500m", "workerMemory": "768Mi"}  # as the e2e backlog test


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 140, 200)).save(out, "JPEG", quality=80)
    return out.getvalue()


def _post(api: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """A polite client: a 503 is temporary, retried after its Retry-After (and said)."""
    for _ in range(5):
        response = api.post(url, **kwargs)
        if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
            break
        print(f"  503 from {url}: {response.text}", flush=True)
        time.sleep(float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()
    return response


def _upload(api: httpx.Client, dataset: int, index: int) -> tuple[int, float]:
    """One JPEG through ticket, pre-signed PUT and complete: (item id, when complete returned)."""
    payload = _jpeg()
    ticket = _post(
        api,
        f"/v1/datasets/{dataset}/uploads",
        json={"name": f"f{index:04}.jpg", "size": len(payload), "contentType": "image/jpeg"},
    )
    body = ticket.json()
    httpx.put(body["url"], content=payload, timeout=30).raise_for_status()
    _post(api, f"/v1/items/{body['itemId']}/complete")
    return int(body["itemId"]), time.monotonic()


def _pod_step(pod: client.V1Pod) -> str:
    """How far a worker pod has come (one of STEPS after `decided`)."""
    status = pod.status or client.V1PodStatus()
    conditions = {c.type: c.status for c in status.conditions or []}
    if conditions.get("Ready") == "True":
        return "ready"
    statuses = status.container_statuses or []
    if any(s.state and s.state.running for s in statuses):
        return "running"
    if conditions.get("PodScheduled") == "True":
        return "scheduled"
    return "pod_created"


class Watch:
    """The first time each step was seen, relative to `origin` (seconds)."""

    def __init__(self, apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str) -> None:
        self.apps, self.core, self.namespace = apps, core, namespace

    def pods(self, terminating: bool = False) -> list[client.V1Pod]:
        """The worker pods; those being deleted too if `terminating` (they may still consume:
        a round must not start before they are gone, or one of them takes its message)."""
        selector = "app.kubernetes.io/name=annostack-worker"
        found = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        if terminating:
            return list(found)
        return [p for p in found if p.metadata and p.metadata.deletion_timestamp is None]

    def until_ready(self, origin: float, timeout: float = 300) -> dict[str, float]:
        seen: dict[str, float] = {}
        while "ready" not in seen:
            now = time.monotonic() - origin
            if now > timeout:
                raise RuntimeError(f"no worker pod Ready after {timeout} s; saw {seen}")
            replicas = self.apps.read_namespaced_deployment("workers", self.namespace).spec.replicas
            if replicas:
                seen.setdefault("decided", now)
            for pod in self.pods():
                reached = STEPS.index(_pod_step(pod))
                for step in STEPS[1 : reached + 1]:
                    seen.setdefault(step, now)
            time.sleep(POLL)
        for step in STEPS:  # a step passed between two polls is seen with the next one
            seen.setdefault(step, seen["ready"])
        return seen


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - started


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_s": round(statistics.median(ordered), 2),
        "max_s": round(ordered[-1], 2),
        "min_s": round(ordered[0], 2),
    }


def _node_pids(state_dir: Path) -> dict[str, list[int]]:
    # A pid file holds "pid starttime" (annostack.devstack.processes).
    pids = {
        name: [int((state_dir / f"{name}.pid").read_text().split()[0])] for name in NODE_PROCESSES
    }
    shims = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"containerd-shim" in (entry / "cmdline").read_bytes():
                    shims.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    pids["containerd"] += shims
    return pids


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_or_none(pid: int) -> float | None:
    try:
        return process_cpu_seconds(pid)
    except FileNotFoundError:  # a shim whose pod ended meanwhile
        return None


def idle_cost(state_dir: Path) -> dict[str, Any]:
    pids = _node_pids(state_dir)
    before = {pid: _cpu_or_none(pid) for group in pids.values() for pid in group}
    time.sleep(IDLE_SECONDS)
    figures: dict[str, Any] = {}
    for name, group in pids.items():
        spans = [(before[pid], _cpu_or_none(pid), pid) for pid in group]
        kept = [
            (start, end, pid) for start, end, pid in spans if start is not None and end is not None
        ]
        used = sum(end - start for start, end, _ in kept)
        figures[name] = {
            "cpu_percent_of_one_core": round(100 * used / IDLE_SECONDS, 2),
            "rss_mib": round(sum(_rss_mib(pid) for _, _, pid in kept), 1),
            "processes": len(kept),
        }
    return figures


@benchmark("node")
def node_bench() -> Figures:
    from annostack.devstack.keda import KedaMetricsAdapter, KedaOperator
    from annostack.devstack.platform import Platform
    from annostack.devstack.stack import Stack

    stack = Stack()
    stack.up()
    os.environ.update(stack.client_env())
    platform = Platform(stack)
    platform.deploy(platform.load_images())
    print(f"  idle cost of the node over {IDLE_SECONDS:.0f} s …", flush=True)
    idle = idle_cost(stack.settings.state_dir)
    print("  the operator's own scaler …", flush=True)
    builtin = _rounds(platform, "builtin")
    print("  KEDA (its operator and metrics adapter, built from kedacore/keda) …", flush=True)
    stack.start(KedaOperator.name)
    stack.start(KedaMetricsAdapter.name)
    try:
        keda = _rounds(platform, "keda")
    finally:
        stack.stop(KedaMetricsAdapter.name, undo=True)
        stack.stop(KedaOperator.name, undo=True)
    return {**_figures(idle, builtin), "keda": _scaler_figures(keda)}


def _rounds(platform: Platform, autoscaler: str) -> list[dict[str, float]]:
    """`RUNS` rounds on a new tenant once `autoscaler` scales it; the tenant deleted after."""
    from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
    from annostack.services.tenancy import TenantDirectory, create_api_token
    from annostack.settings import Settings

    objects = client.CustomObjectsApi(platform.kube.api)
    name = f"nb{os.urandom(3).hex()}"
    body = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Tenant",
        "metadata": {"name": name, "labels": {"annostack.io/bench": "node"}},
        "spec": {"displayName": name, "deletionPolicy": "Delete", "plan": PLAN, "workers": WORKERS},
    }
    objects.create_cluster_custom_object(API_GROUP, API_VERSION, "tenants", body)
    names = TenantNames(tenant=name)
    watch = Watch(client.AppsV1Api(platform.kube.api), client.CoreV1Api(platform.kube.api),
                  names.namespace)  # fmt: skip
    directory = TenantDirectory(platform.kube, Settings().db)
    rounds: list[dict[str, float]] = []
    try:

        def status() -> dict[str, Any]:
            return _tenant_status(objects, API_GROUP, API_VERSION, name)

        _wait(lambda: _ready(status()), 180, "the tenant Ready")
        _wait(lambda: status().get("autoscaler") == autoscaler, 120, f"{autoscaler} scaling")
        token = create_api_token(directory.get(name), "node-bench")
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=platform.api_url, headers=auth, timeout=30) as api:
            created = _post(
                api,
                "/v1/datasets",
                json={"name": "frames", "displayName": "F", "dataType": "IMAGE"},
            )
            dataset = int(created.json()["id"])
            for index in range(RUNS):
                _wait(lambda: not watch.pods(terminating=True), 300, "no worker pod left")
                item, origin = _upload(api, dataset, index)
                steps = watch.until_ready(origin)

                def processed(item: int = item) -> bool:
                    return bool(api.get(f"/v1/items/{item}").json()["status"] == "processed")

                _wait(processed, 300, "the item processed")
                steps["processed"] = time.monotonic() - origin
                steps["back_to_zero"] = _wait(lambda: not watch.pods(), 300, "pods back to 0")
                rounds.append(steps)
                print(f"  {autoscaler} round {index + 1}/{RUNS}: " + ", ".join(
                    f"{step} {seconds:.1f}s" for step, seconds in steps.items()
                ), flush=True)  # fmt: skip
    finally:
        objects.delete_cluster_custom_object(API_GROUP, API_VERSION, "tenants", name)
        directory.close()
    return rounds


def _tenant_status(
    objects: client.CustomObjectsApi, group: str, version: str, name: str
) -> dict[str, Any]:
    tenant = objects.get_cluster_custom_object(group, version, "tenants", name)
    status: dict[str, Any] = tenant.get("status", {}) if isinstance(tenant, dict) else {}
    return status


def _ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def _scaler_figures(rounds: list[dict[str, float]]) -> Figures:
    return {
        "runs": len(rounds),
        "backlog_to_first_pod_ready": _summary([r["ready"] for r in rounds]),
        "steps_from_backlog": {
            step: _summary([r[step] for r in rounds]) for step in (*STEPS, "processed")
        },
        "pod_start_decided_to_ready": _summary([r["ready"] - r["decided"] for r in rounds]),
        "queue_empty_to_zero_pods": _summary([r["back_to_zero"] for r in rounds]),
        "rounds": rounds,
    }


def _figures(idle: dict[str, Any], rounds: list[dict[str, float]]) -> Figures:
    pod_start = [r["ready"] - r["decided"] for r in rounds]
    # KEDA's defaults: activation at the next 30 s poll (uniform, half on average), then the
    # same pod start as measured here. (The ScaledObjects the operator writes poll every 5 s;
    # that is measured, under "keda".)
    keda_model = KEDA_POLLING_INTERVAL / 2 + statistics.median(pod_start)
    return {
        **_scaler_figures(rounds),
        "keda_defaults_modelled_first_pod_ready_p50_s": round(keda_model, 2),
        "target_first_pod_ready_s": 10.0,
        "idle": idle,
    }
