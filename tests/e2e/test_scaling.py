"""Traffic through the cluster: metrics scraped as Prometheus would, a backlog the workers drain.

Uploads go through the API's Service (its NodePort on the node's address), workers are pods the
operator scales on the tenant's queue depth, and the counters are read from a pod in a
monitoring namespace, over cluster DNS, as a ServiceMonitor's scrape would.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from kubernetes import client

from annostack.devstack.platform import API, NAMESPACE, OPERATOR, Platform
from annostack.services.tenancy import TenantDirectory
from tests.e2e.conftest import ClusterTenants, api_token
from tests.e2e.pods import run_in, running_ready
from tests.e2e.traffic import SCALING_WORKER, upload_images, worker_pods
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

ITEMS = 200
# Two workers fit the two-core node beside the operator and the API only with a small plan.
SMALL_WORKER = {"workerCpu": "250m", "workerMemory": "512Mi"}


def scrape(core: client.CoreV1Api, scraper: tuple[str, str], url: str) -> str:
    namespace, pod = scraper
    code = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    return run_in(core, pod, namespace, code)


def sample_total(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith((f"{name} ", f"{name}{{")) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_operator_and_api_metrics_move_when_scraped_through_the_cluster(
    platform: Platform,
    core: client.CoreV1Api,
    scraper: tuple[str, str],
    tenants: ClusterTenants,
    directory: TenantDirectory,
) -> None:
    operator = f"http://{OPERATOR}-metrics.{NAMESPACE}.svc.cluster.local:9090/metrics"
    api = f"http://{API}.{NAMESPACE}.svc.cluster.local"
    reconciles = "annostack_operator_reconciles_total"
    requests = "annostack_api_request_duration_seconds_count"
    before = sample_total(scrape(core, scraper, operator), reconciles, kind="Tenant")
    api_before = sample_total(scrape(core, scraper, f"{api}/metrics"), requests)
    name = tenants.create(plan=SMALL_WORKER)
    tenants.wait_condition(name, "Ready", "True")
    token = api_token(directory, name)
    listed = httpx.get(
        f"{platform.api_url}/v1/datasets", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 200, listed.text
    assert sample_total(scrape(core, scraper, operator), reconciles, kind="Tenant") > before
    assert sample_total(scrape(core, scraper, f"{api}/metrics"), requests) > api_before


@pytest.mark.timeout(900)  # uploads, two pod starts, a kill, the drain and the scale-down
def test_a_backlog_starts_workers_that_process_every_item_despite_a_killed_pod(
    platform: Platform,
    core: client.CoreV1Api,
    tenants: ClusterTenants,
    directory: TenantDirectory,
) -> None:
    workers = {"minReplicas": 0, "maxReplicas": 2, "targetBacklogPerReplica": 100}
    name = tenants.create(
        plan=SCALING_WORKER, workers={**workers, "scaleDownStabilizationSeconds": 10}
    )
    tenants.wait_condition(name, "Ready", "True")
    assert not worker_pods(core, name), "minReplicas 0: no worker before there is work"
    auth = {"Authorization": f"Bearer {api_token(directory, name)}"}
    with httpx.Client(base_url=platform.api_url, headers=auth, timeout=30) as api:
        dataset, items = upload_images(api, ITEMS)
        wait_for(
            lambda: any(running_ready(p) for p in worker_pods(core, name)),
            timeout=180,
            what="a worker pod Running and Ready",
        )
        # A worker killed mid-batch: its unacknowledged messages go to the others.
        victim = next(p for p in worker_pods(core, name) if running_ready(p))
        core.delete_namespaced_pod(
            victim.metadata.name, victim.metadata.namespace, grace_period_seconds=0
        )

        def processed() -> int:
            return int(api.get(f"/v1/datasets/{dataset}").json()["processedCount"])

        try:
            wait_for(lambda: processed() >= ITEMS, timeout=420, what=f"{ITEMS} items processed")
        except AssertionError as error:
            states = Counter(api.get(f"/v1/items/{item}").json()["status"] for item in items)
            running = [(p.metadata.name, p.status.phase) for p in worker_pods(core, name)]
            raise AssertionError(f"{error}; items: {dict(states)}; pods: {running}") from error
        assert processed() == ITEMS, "each item counted once"
    wait_for(lambda: not worker_pods(core, name), timeout=240, what="worker pods back to 0")

    # The condition follows on the operator's next pass over the tenant, not with the pods.
    def scaled_to_zero() -> bool:
        found = tenants.condition(name, "WorkersReady")
        return found is not None and (found["status"], found["reason"]) == ("True", "ScaledToZero")

    wait_for(scaled_to_zero, timeout=120, what="WorkersReady True, reason ScaledToZero")
