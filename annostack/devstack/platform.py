"""annostack itself on the local stack: CRDs, the operator process, and a demo tenant.

Used by `annostack dev platform` (the README's first command). The operator runs as a plain
background process like the stack's servers (pid file, log, `dev down` stops it); it uses the
admin kubeconfig, whereas the integration tests run it with its least-privilege ServiceAccount.
Reads `crds/`, `manifests/` and `examples/` from the source checkout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from annostack.adapters.kube import Kube
from annostack.devstack import processes
from annostack.devstack.components import http_get
from annostack.devstack.console import last_lines, say
from annostack.devstack.stack import ComponentFailed, Stack
from annostack.domain.tenants import API_GROUP, API_VERSION
from annostack.settings import KubernetesSettings

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_MANIFESTS = ROOT / "manifests" / "base" / "operator"
DEMO_TENANT = ROOT / "examples" / "tenant.yaml"
READY_TIMEOUT_SECONDS = 120.0


def operator_command(health_port: int, metrics_port: int) -> list[str]:
    """`annostack operator run` on loopback, as the local stack and the tests start it."""
    return [
        sys.executable, "-m", "annostack", "operator", "run", "--bind-address", "127.0.0.1",
        "--health-port", str(health_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class Platform:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.kube = Kube(KubernetesSettings(kubeconfig=stack.ctx.kubeconfig))
        state = stack.settings.state_dir
        self.pid_path = state / "operator.pid"
        self.log_path = state / "logs" / "operator.log"
        self.health_port = stack.settings.ports.operator_health

    def install(self) -> None:
        """CRDs (generated ones and kopf's peering CRD), then the objects that use them."""
        crd_files = [
            *sorted((ROOT / "crds").glob("*.yaml")),
            OPERATOR_MANIFESTS / "kopf-peering-crd.yaml",
        ]
        later = []
        for path in crd_files:
            for doc in documents(path):
                if doc["kind"] == "CustomResourceDefinition":
                    self.kube.apply(doc)
                else:
                    later.append(doc)
        self._wait(lambda: self.kube.has_api("kopf.dev/v1", "ClusterKopfPeering"), "CRDs served")
        for doc in [*later, *documents(OPERATOR_MANIFESTS / "namespace.yaml")]:
            self.kube.apply(doc)
        say("  [green]✓[/green] CRDs installed (tenants, datasets, processingjobs)")

    def start_operator(self, extra_env: dict[str, str] | None = None) -> int:
        """Start the operator unless it runs; return its pid."""
        if processes.running(self.pid_path) is None:
            ports = self.stack.settings.ports
            processes.spawn(
                operator_command(ports.operator_health, ports.operator_metrics),
                pid_path=self.pid_path,
                log_path=self.log_path,
                cwd=self.stack.settings.state_dir,
                env={**self.stack.client_env(), **(extra_env or {})},
            )
        self._wait(self._operator_healthy, "operator /healthz")
        say(f"  [green]✓[/green] operator running (log: {self.log_path})")
        record = processes.running(self.pid_path)
        assert record is not None
        return record.pid

    def _operator_healthy(self) -> bool:
        if processes.running(self.pid_path) is None:
            raise ComponentFailed(f"the operator exited:\n{last_lines(self.log_path)}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            return http_get(url).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def apply_demo(self) -> str:
        (tenant,) = documents(DEMO_TENANT)
        self.kube.apply(tenant)
        name: str = tenant["metadata"]["name"]
        self._wait(lambda: self._tenant_ready(name), f"Tenant {name} Ready", READY_TIMEOUT_SECONDS)
        say(f"  [green]✓[/green] Tenant {name} Ready")
        return name

    def _tenant_ready(self, name: str) -> bool:
        tenant = self.kube.get(f"{API_GROUP}/{API_VERSION}", "Tenant", name)
        conditions = (tenant.to_dict().get("status") or {}).get("conditions", []) if tenant else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self) -> None:
        if processes.stop(self.pid_path):
            say("  stopped operator")

    @staticmethod
    def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ComponentFailed(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.5)
