"""Settings of the local stack (``ANNOSTACK_DEV_*``).

Every default port sits away from the service's standard port (2379, 6443, 3306, 4000, 8333,
6650, 8080, 6379, ...) so the stack coexists with anything else running on the machine.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Ports(BaseModel):
    """Loopback ports of the local stack (`ANNOSTACK_DEV_PORTS__<NAME>`)."""

    etcd_client: int = Field(default=12379, description="etcd client URL port.")
    etcd_peer: int = Field(default=12380, description="etcd peer URL port (single member).")
    kube_apiserver: int = Field(default=16443, description="kube-apiserver secure port.")
    mysql: int = Field(default=13306, description="MariaDB or TiDB SQL port.")
    tidb_status: int = Field(default=11080, description="TiDB status port (TiDB only).")
    s3: int = Field(default=18333, description="SeaweedFS S3 port.")
    seaweed_master: int = Field(default=19333, description="SeaweedFS master (gRPC at +10000).")
    seaweed_volume: int = Field(default=19340, description="SeaweedFS volume (gRPC at +10000).")
    seaweed_filer: int = Field(default=18888, description="SeaweedFS filer (gRPC at +10000).")
    seaweed_admin: int = Field(
        default=13646, description="SeaweedFS admin server, UI off (gRPC at +10000)."
    )
    pulsar_broker: int = Field(default=16650, description="Pulsar binary protocol port.")
    pulsar_web: int = Field(default=18080, description="Pulsar admin REST port.")
    pulsar_bookie: int = Field(default=13181, description="BookKeeper bookie port.")
    redis: int = Field(default=16379, description="Redis port.")
    operator_health: int = Field(default=18081, description="Operator /healthz (dev platform).")
    operator_metrics: int = Field(default=19090, description="Operator /metrics (dev platform).")
    api: int = Field(default=18000, description="The tenant API, open gateway (dev platform).")
    demo_worker: int = Field(
        default=18082, description="The demo tenant's worker /healthz (dev platform)."
    )
    kube_scheduler: int = Field(default=16459, description="kube-scheduler /healthz (loopback).")
    kubelet: int = Field(default=11250, description="kubelet API, on the node address.")
    kubelet_healthz: int = Field(default=11248, description="kubelet /healthz (loopback).")
    kube_proxy_healthz: int = Field(default=11256, description="kube-proxy /healthz (loopback).")
    kube_proxy_metrics: int = Field(default=11249, description="kube-proxy /metrics (loopback).")
    coredns_ready: int = Field(default=11053, description="CoreDNS /ready (loopback).")
    network_policies_metrics: int = Field(
        default=11090, description="kube-network-policies /metrics (loopback)."
    )
    keda_operator_metrics: int = Field(default=11091, description="KEDA operator /metrics.")
    keda_operator_health: int = Field(default=11092, description="KEDA operator /healthz.")
    keda_metrics_service: int = Field(
        default=11966, description="KEDA operator's gRPC metrics service, for its adapter."
    )
    keda_adapter: int = Field(
        default=11443, description="KEDA's external metrics API server, on the node address."
    )
    keda_adapter_metrics: int = Field(default=11093, description="KEDA adapter /metrics.")


class NodeSettings(BaseModel):
    """The local stack's one Kubernetes node (`ANNOSTACK_DEV_NODE__<NAME>`).

    Pods live on a bridge of the stack's own. Its gateway address is the node's address: kubelet
    serves there, CoreDNS answers there, and the servers pods need (apiserver, database, S3,
    Pulsar, Redis) listen there besides loopback, so traffic never leaves the machine.
    """

    name: str = Field(default="annostack-node", description="Node name kubelet registers.")
    bridge: str = Field(default="annocni0", description="Linux bridge the pods attach to.")
    address: str = Field(
        default="10.244.0.1", description="The bridge's address: the node IP and pods' gateway."
    )
    pod_cidr: str = Field(default="10.244.0.0/24", description="Pod addresses (host-local IPAM).")
    service_cidr: str = Field(default="10.96.0.0/16", description="ClusterIP range.")
    cluster_domain: str = Field(default="cluster.local", description="Cluster DNS domain.")

    @property
    def prefix_length(self) -> int:
        return int(self.pod_cidr.split("/")[1])

    @property
    def kubernetes_service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's ClusterIP."""
        return str(ipaddress.ip_network(self.service_cidr)[1])


def _default_home() -> Path:
    return Path.home() / ".cache" / "annostack"


class DevStackSettings(BaseSettings):
    """Where the local stack keeps its builds and data, and how it is wired."""

    model_config = SettingsConfigDict(
        env_prefix="ANNOSTACK_DEV_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Cache root: builds, binaries and the stack's data live below it.",
    )
    database: Literal["mariadb", "tidb"] = Field(
        default="tidb",
        description=(
            "MySQL-protocol server: tidb-server built from source (what production runs; "
            "per-tenant resource groups), or MariaDB from Debian (lighter, nothing to build)."
        ),
    )
    ports: Ports = Field(default_factory=Ports)
    node: NodeSettings = Field(default_factory=NodeSettings)
    keda: bool = Field(
        default=False,
        description=(
            "Run KEDA (operator and external metrics adapter, built from kedacore/keda): the "
            "annostack operator then hands each tenant's scaling to a KEDA ScaledObject."
        ),
    )
    startup_timeout: float = Field(
        default=240.0, description="Seconds a component may take to become ready."
    )

    @property
    def bin_dir(self) -> Path:
        return self.home / "bin"

    @property
    def build_dir(self) -> Path:
        return self.home / "build"

    @property
    def state_dir(self) -> Path:
        return self.home / "stack"
