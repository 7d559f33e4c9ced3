"""KEDA on the local stack: its operator and its external metrics adapter, built from the
`github.com/kedacore/keda/v2` module (`recipes/keda`), off unless asked for.

With KEDA's API served, the annostack operator hands each tenant's scaling rule to KEDA as a
ScaledObject (Pulsar scaler, the tenant's own token) instead of scaling the workers itself
(`services/autoscaling.py`). So KEDA is an add-on a platform team chooses, here as in a cluster:
`ANNOSTACK_DEV_KEDA=true annostack dev up` runs it, the e2e tier's KEDA module starts it for
its own tests, and an `up` without it removes any KEDA API left behind, so the operator never
hands scaling to a KEDA that is not running.

How the pieces meet, as KEDA's own manifests wire them in a cluster:

- **KEDA's operator** reconciles ScaledObjects into HorizontalPodAutoscalers, activates a
  Deployment from 0 to 1 itself (pollingInterval) and serves the scalers' values over mTLS gRPC.
- **KEDA's adapter** is an aggregated API server for `external.metrics.k8s.io`: the
  controller manager's HPA controller asks the apiserver, which proxies to the adapter (the
  front-proxy identity, `components.KubeApiserver`), which asks the operator.
- Both run as host processes with the admin kubeconfig, as CoreDNS and the controller
  manager do, with one certificate from the stack's CA (what KEDA's own cert rotation would
  generate). The adapter listens on the node's address, where the apiserver dials the
  endpoint of the APIService's selector-less Service; the rest binds to loopback.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from annostack.adapters.kube import Kube
from annostack.devstack import builds
from annostack.devstack.components import HOST, http_ok
from annostack.devstack.node import NodeComponent
from annostack.devstack.pki import CertRequest
from annostack.settings import KubernetesSettings

NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
API_SERVICE = "v1beta1.external.metrics.k8s.io"
KEDA_GROUPS = ("keda.sh", "eventing.keda.sh")
SETTLE_SECONDS = 60.0


def _kube(kubeconfig: Path) -> Kube:
    return Kube(KubernetesSettings(kubeconfig=kubeconfig))


def _wait(check: Callable[[], bool], what: str, timeout: float = SETTLE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"KEDA: {what} not reached after {timeout:.0f}s")
        time.sleep(0.5)


def keda_crds(module_dir: Path) -> list[dict[str, Any]]:
    """KEDA's CRDs as its release publishes them (config/crd/bases of the built module)."""
    return [
        doc
        for path in sorted((module_dir / "config" / "crd" / "bases").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def remove_keda_api(kube: Kube) -> None:
    """Take KEDA's API out of the cluster: the APIService, then every KEDA CRD.

    A ScaledObject's finalizer is KEDA's operator's to clear; with it stopped, deleting the
    CRD would wait forever, so the finalizers go first. The HPAs KEDA made are owned by their
    ScaledObjects and go with them (garbage collection); the Deployments keep their scale.
    """
    kube.delete("apiregistration.k8s.io/v1", "APIService", API_SERVICE)
    crds = kube.dynamic.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    for crd in crds.get().to_dict()["items"]:
        spec = crd["spec"]
        if spec["group"] not in KEDA_GROUPS:
            continue
        kinds = kube.dynamic.resources.get(
            api_version=f"{spec['group']}/{spec['versions'][0]['name']}", kind=spec["names"]["kind"]
        )
        for obj in kinds.get().to_dict()["items"]:
            meta = obj["metadata"]
            if meta.get("finalizers"):
                kinds.patch(
                    body={"metadata": {"finalizers": None}},
                    name=meta["name"],
                    namespace=meta.get("namespace"),
                    content_type="application/merge-patch+json",
                )
        kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
    _wait(lambda: not keda_served(kube), "KEDA's CRDs removed")


def keda_served(kube: Kube) -> bool:
    return any(name.endswith(KEDA_GROUPS) for name in kube.established_crds())


class KedaOperator(NodeComponent):
    """KEDA's operator: ScaledObjects into HPAs, 0 ↔ 1 activation, the scalers' gRPC service."""

    name = "keda-operator"
    requires = ("kube-apiserver",)

    @property
    def wanted(self) -> bool:
        return self.ctx.settings.keda

    def prepare(self) -> None:
        binaries = builds.ensure_go_binaries(builds.KEDA, self.ctx.settings)
        self.binary = binaries["keda-operator"]
        self.module_dir = builds.go_module_dir(builds.KEDA, builds.KEDA_MODULE, self.ctx.settings)

    @property
    def cert_dir(self) -> Path:
        return self.data / "certs"

    def before_start(self) -> None:
        self._write_certificates()
        kube = _kube(self.ctx.kubeconfig)
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        crds = keda_crds(self.module_dir)
        for crd in crds:
            kube.apply(crd)
        names = {crd["metadata"]["name"] for crd in crds}
        # Its controllers watch every kind at start; one not yet served fails the start.
        _wait(lambda: names <= kube.established_crds(), "KEDA's CRDs established")

    def _write_certificates(self) -> None:
        """KEDA's certificate layout (ca.crt, tls.crt, tls.key), shared by the operator's
        gRPC server and the adapter (its client towards the operator, and its serving
        certificate towards the apiserver), as KEDA's own rotation would issue it."""
        node = self.node
        pair = self.ca.issue(
            "keda",
            CertRequest(
                "keda",
                ip_addresses=(HOST, node.address),
                dns_names=(
                    f"keda-operator.{NAMESPACE}.svc",
                    f"{ADAPTER_SERVICE}.{NAMESPACE}.svc",
                    f"{ADAPTER_SERVICE}.{NAMESPACE}.svc.{node.cluster_domain}",
                ),
                client=True,
                server=True,
            ),
        )
        self.cert_dir.mkdir(exist_ok=True, mode=0o700)
        for name, source in (
            ("ca.crt", self.ca.pair.cert),
            ("tls.crt", pair.cert),
            ("tls.key", pair.key),
        ):
            link = self.cert_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(source)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--metrics-bind-address={HOST}:{self.ports.keda_operator_metrics}",
            f"--health-probe-bind-address={HOST}:{self.ports.keda_operator_health}",
            f"--metrics-service-bind-address={HOST}:{self.ports.keda_metrics_service}",
            f"--cert-dir={self.cert_dir}",
            "--enable-cert-rotation=false",
            "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false",
            "--leader-elect=false",
            "--zap-log-level=info",
            "--zap-encoder=console",
        ]

    def process_env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.ctx.kubeconfig),
            "WATCH_NAMESPACE": "",  # every namespace: tenants' ScaledObjects live in theirs
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }

    def probe(self) -> bool:
        return http_ok(f"http://{HOST}:{self.ports.keda_operator_health}/readyz")

    def after_stop(self) -> None:
        # With the apiserver down already, the next `up` without KEDA removes it.
        if http_ok(f"{self.apiserver}/readyz"):
            remove_keda_api(_kube(self.ctx.kubeconfig))

    def ensure_absent(self) -> None:
        kube = _kube(self.ctx.kubeconfig)
        if keda_served(kube) or kube.get("apiregistration.k8s.io/v1", "APIService", API_SERVICE):
            remove_keda_api(kube)

    @property
    def endpoint(self) -> str:
        return f"grpc://{HOST}:{self.ports.keda_metrics_service} (metrics http://{HOST}:{self.ports.keda_operator_metrics}/metrics)"


class KedaMetricsAdapter(NodeComponent):
    """KEDA's `external.metrics.k8s.io` server, registered as an APIService."""

    name = "keda-metrics-apiserver"
    requires = ("keda-operator",)

    @property
    def wanted(self) -> bool:
        return self.ctx.settings.keda

    def prepare(self) -> None:
        self.binary = builds.ensure_go_binaries(builds.KEDA, self.ctx.settings)["keda-adapter"]

    @property
    def cert_dir(self) -> Path:
        return self.ctx.data_dir(KedaOperator.name) / "certs"

    def command(self) -> list[str]:
        kubeconfig = str(self.ctx.kubeconfig)
        certs = self.cert_dir
        return [
            str(self.binary),
            f"--bind-address={self.node.address}",
            f"--secure-port={self.ports.keda_adapter}",
            f"--port={self.ports.keda_adapter_metrics}",  # bound to loopback by the recipe
            f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'tls.crt'}",
            f"--tls-private-key-file={certs / 'tls.key'}",
            f"--client-ca-file={certs / 'ca.crt'}",
            f"--metrics-service-address={HOST}:{self.ports.keda_metrics_service}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--zap-log-level=info",
        ]

    def process_env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.ctx.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
        }

    @property
    def url(self) -> str:
        return f"https://{self.node.address}:{self.ports.keda_adapter}"

    def probe(self) -> bool:
        try:
            trust = ssl.create_default_context(cafile=str(self.ca.pair.cert))
            reply = httpx.get(f"{self.url}/readyz", verify=trust, timeout=2.0)
        except httpx.HTTPError:
            return False
        return reply.status_code == httpx.codes.OK

    def configure(self) -> None:
        kube = _kube(self.ctx.kubeconfig)
        for manifest in self._registration():
            kube.apply(manifest)
        _wait(lambda: _available(kube), f"APIService {API_SERVICE} Available")

    def _registration(self) -> list[dict[str, Any]]:
        """The selector-less Service the APIService names, its endpoint (the adapter on the
        node's address) and the APIService, which trusts the adapter through the stack's CA."""
        meta = {"name": ADAPTER_SERVICE, "namespace": NAMESPACE}
        port = {"name": "https", "port": 443, "targetPort": self.ports.keda_adapter}
        ca_bundle = base64.b64encode(self.ca.pair.cert.read_bytes()).decode()
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": meta,
             "spec": {"ports": [port]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
             "subsets": [{"addresses": [{"ip": self.node.address}],
                          "ports": [{"name": "https", "port": self.ports.keda_adapter}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": API_SERVICE},
             "spec": {"service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": 443},
                      "group": "external.metrics.k8s.io", "version": "v1beta1",
                      "caBundle": ca_bundle, "groupPriorityMinimum": 100,
                      "versionPriority": 100}},
        ]  # fmt: skip

    def after_stop(self) -> None:
        # An APIService nobody answers makes discovery incomplete, which stalls namespace
        # deletion cluster-wide: it goes with the adapter.
        if http_ok(f"{self.apiserver}/readyz"):
            _kube(self.ctx.kubeconfig).delete(
                "apiregistration.k8s.io/v1", "APIService", API_SERVICE
            )

    @property
    def endpoint(self) -> str:
        return f"{self.url} (APIService {API_SERVICE})"


def _available(kube: Kube) -> bool:
    found = kube.get("apiregistration.k8s.io/v1", "APIService", API_SERVICE)
    if found is None:
        return False
    conditions = found.to_dict().get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)
