"""Isolation tried from where an exploit would start: inside a tenant's worker pod.

A decoder exploit in tenant A's worker runs with exactly what the pod has: the environment
its Deployment gives it (A's Secret), the pod network, the node's DNS. From there the probe of
tests/integration/isolation tries everything of tenant B's on every backend, and A's own
(which must work, so a denial is a fence and not a broken credential).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kubernetes import client

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.devstack.platform import API, NAMESPACE, OPERATOR, Platform
from annostack.domain import keyspace
from annostack.domain.tenants import TenantNames
from annostack.settings import Settings
from tests.e2e.conftest import ClusterTenants
from tests.e2e.pods import Executed, exec_in, pods, running_ready
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

PROBE = Path(__file__).parents[1] / "integration" / "isolation" / "probe.py"
SMALL_WORKER = {"workerCpu": "250m", "workerMemory": "512Mi"}
# Connects to each (host, port) of argv[1]; a dropped first packet is a timeout, which tells
# a policy's drop apart from a closed port (refused) and a name that does not resolve.
CONNECT = """
import json, socket, sys
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        outcome = "open"
    except TimeoutError:
        outcome = "timeout"
    except OSError as error:
        outcome = f"error: {error}"
    print(json.dumps([host, port, outcome]))
"""
STOLEN = b'{"objects": ["secret of the victim"]}'
STOLEN_KEY = "annotations/1/probe.json"


@pytest.fixture(scope="module")
def two_tenants(platform: Platform, stack_settings: Settings) -> Iterator[tuple[str, str]]:
    """(attacker, victim), both Ready through the in-cluster operator, each with a worker pod;
    the victim has data worth stealing in its bucket and Redis."""
    made = ClusterTenants(platform)
    attacker = made.create(plan=SMALL_WORKER, workers={"minReplicas": 1, "maxReplicas": 1})
    victim = made.create(plan=SMALL_WORKER, workers={"minReplicas": 1, "maxReplicas": 1})
    try:
        for name in (attacker, victim):
            made.wait_condition(name, "Ready", "True", timeout=240)
        victim_names = TenantNames(tenant=victim)
        store = ObjectStoreAdmin(stack_settings.s3)
        store.client.put_object(victim_names.bucket, STOLEN_KEY, io.BytesIO(STOLEN), len(STOLEN))
        operator = redis.Redis.from_url(stack_settings.redis.url.get_secret_value())
        operator.sadd(keyspace.key(keyspace.Family.JOB, victim, "probe", "expected"), "1")
        operator.close()
        yield attacker, victim
    finally:
        made.delete_all()


def worker_pod(core: client.CoreV1Api, tenant: str) -> str:
    names = TenantNames(tenant=tenant)
    found: list[str] = []

    def one_running() -> bool:
        workers = pods(core, names.namespace, "app.kubernetes.io/name=annostack-worker")
        found[:] = [p.metadata.name for p in workers if running_ready(p)]
        return len(found) == 1

    wait_for(one_running, timeout=180, what=f"a worker pod of {tenant} Running and Ready")
    return found[0]


def test_a_worker_pod_reaches_nothing_of_another_tenant_and_all_of_its_own(
    core: client.CoreV1Api, two_tenants: tuple[str, str], stack_settings: Settings
) -> None:
    attacker, victim = two_tenants
    pod = worker_pod(core, attacker)
    # The probe's source as an argument: nothing is written into the pod, nothing but the
    # image's own Python and libraries runs it.
    admin = f"ANNOSTACK_PROBE_PULSAR_ADMIN_URL={stack_settings.pulsar.admin_url}"
    command = ["env", admin, "python", "-c", PROBE.read_text(), victim]
    done = exec_in(core, pod, TenantNames(tenant=attacker).namespace, command, timeout=180)
    attempts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert attempts, f"the probe printed no attempts:\n{done.stderr[-2000:]}"
    backends = {a["backend"] for a in attempts}
    assert backends == {"s3", "pulsar", "redis", "database"}, done.stderr[-2000:]
    own = [a for a in attempts if a["kind"] == "own"]
    assert own and len(own) < len(attempts), "the probe tried only attacks, or only its own"
    failed = [a for a in attempts if a["allowed"] == (a["kind"] == "attack")]
    report = [f"{a['kind']} {a['backend']}: {a['action']} -> {a['detail']}" for a in failed]
    assert not failed, "\n".join(report)
    assert done.exit_code == 0


def worker_ip(core: client.CoreV1Api, tenant: str) -> str:
    pod = core.read_namespaced_pod(worker_pod(core, tenant), TenantNames(tenant=tenant).namespace)
    return str(pod.status.pod_ip)


def connect_from(
    core: client.CoreV1Api, pod: str, namespace: str, targets: list[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    done: Executed = exec_in(
        core, pod, namespace, ["python", "-c", CONNECT, json.dumps(targets)], timeout=60
    )
    outcomes = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert len(outcomes) == len(targets), done.stderr[-2000:]
    return {(host, port): outcome for host, port, outcome in outcomes}


def test_the_pod_network_lets_a_worker_reach_no_other_tenants_pod_nor_the_platforms(
    core: client.CoreV1Api, two_tenants: tuple[str, str], scraper: tuple[str, str]
) -> None:
    """The NetworkPolicies, enforced by the node's engine, each drop the attacker's first
    packet: the victim's worker admits only monitoring (the victim's ingress policy), so
    does the operator's metrics port (annostack-system's), and the API, which admits
    everyone, is beyond the attacker's own egress policy (DNS and the backends only). Each
    answers a monitoring pod, so every fence is a policy and not a closed port; the names
    resolve (a timeout, not a lookup error), so cluster DNS stays reachable."""
    attacker, victim = two_tenants
    victim_worker = (worker_ip(core, victim), 8080)
    operator_metrics = (f"{OPERATOR}-metrics.{NAMESPACE}.svc.cluster.local", 9090)
    api = (f"{API}.{NAMESPACE}.svc.cluster.local", 80)
    targets = [victim_worker, operator_metrics, api]
    attacker_namespace = TenantNames(tenant=attacker).namespace
    from_attacker = connect_from(core, worker_pod(core, attacker), attacker_namespace, targets)
    from_monitoring = connect_from(core, scraper[1], scraper[0], targets)
    assert from_monitoring == dict.fromkeys(targets, "open")
    assert from_attacker == dict.fromkeys(targets, "timeout")


def test_the_victims_data_is_untouched_after_the_attack(
    two_tenants: tuple[str, str], stack_settings: Settings
) -> None:
    _, victim = two_tenants
    names = TenantNames(tenant=victim)
    stored = ObjectStoreAdmin(stack_settings.s3).client.get_object(names.bucket, STOLEN_KEY)
    assert stored.read() == STOLEN
    operator = redis.Redis.from_url(stack_settings.redis.url.get_secret_value())
    assert operator.get(keyspace.key(keyspace.Family.LOCK, victim, 1)) is None
    operator.close()
