"""Running the operator: kopf settings, backend clients, metrics and health endpoints.

Kopf keeps its own bookkeeping (handler progress, the last-handled spec) in annotations under
`annostack.io/`, never in `status`: the CRD's structural schema would prune a `status.kopf`
field, and Argo CD/Rancher read `status` as ours alone. One replica is active at a time through
kopf peering (`ClusterKopfPeering` "annostack"); `--standalone` skips peering for development.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import kopf
from prometheus_client import start_http_server

from annostack.adapters.push import PushPublisher
from annostack.domain.tenants import API_GROUP
from annostack.operator import (  # noqa: F401  (they register their handlers)
    datasets,
    jobs,
    scaling,
    tenants,
)
from annostack.services.autoscaling import QueueScaler
from annostack.services.jobs import JobRunner
from annostack.services.tenancy import TenantDirectory
from annostack.services.tenants import Backends, TenantProvisioner
from annostack.settings import Settings

PEERING_NAME = "annostack"


@dataclass(frozen=True)
class OperatorOptions:
    standalone: bool = False
    metrics_port: int = 9090
    health_port: int = 8081
    bind_address: str = "0.0.0.0"  # noqa: S104  (a pod serves probes and scrapes on its IP)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # A replica that died without saying goodbye (SIGKILL, node loss) blocks its successor
    # until its peering entry expires; 60 s by default is a minute of no reconciling.
    settings.peering.lifetime = 15
    # Sync handlers run in this pool; backend calls block, so allow tenants in parallel.
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's default login goes through the kubernetes client, which reads KUBECONFIG once,
    # when it is imported; kopf's own kubeconfig reader reads it now, after `run` set it.
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


def run(options: OperatorOptions) -> None:
    settings = Settings()
    if settings.kubernetes.kubeconfig is not None:
        # Read by the login handler above.
        os.environ["KUBECONFIG"] = str(settings.kubernetes.kubeconfig)
    kopf.configure(log_format=kopf.LogFormat.JSON, verbose=False)
    # Per-request logs of the HTTP and migration libraries drown the operator's own.
    for chatty in ("httpx", "alembic", "kubernetes.client.rest"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    start_http_server(options.metrics_port, addr=options.bind_address)
    backends = Backends(settings)
    memo = kopf.Memo(
        provisioner=TenantProvisioner(backends, tenants.TIMINGS.rotation_grace_seconds),
        scaler=QueueScaler(backends, tenants.TIMINGS.dead_letter_interval_seconds),
        directory=TenantDirectory(backends.kube, settings.db),
        jobs=JobRunner.for_settings(settings),
        push=PushPublisher.from_url(settings.redis.url.get_secret_value()),
    )
    kopf.run(
        clusterwide=True,
        standalone=options.standalone,
        peering_name=PEERING_NAME,
        liveness_endpoint=f"http://{options.bind_address}:{options.health_port}/healthz",
        memo=memo,
    )
