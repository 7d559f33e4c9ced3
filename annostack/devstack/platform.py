"""annostack itself on the local stack: CRDs, the operator, a demo tenant, the API, a worker.

Used by `annostack dev platform` (the README's first command). The operator, the API (open
gateway) and the demo tenant's worker run as plain background processes like the stack's
servers (pid file, log, `dev down` stops them). The operator uses the admin kubeconfig,
whereas the integration tests run it with its least-privilege ServiceAccount. The local stack
has no nodes, so the worker Deployment's pods stay Pending; the demo worker is started here
instead, with the environment the Deployment would give it (the tenant's Secret), so uploads
are processed. Reads `crds/`, `manifests/` and `examples/` from the source checkout.
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
from annostack.domain.tenants import API_GROUP, API_VERSION, TenantNames
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


def api_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "annostack", "api", "run",
        "--host", "127.0.0.1", "--port", str(port), "--gateway", "open",
    ]  # fmt: skip


WORKER_COMMAND = [sys.executable, "-m", "annostack", "worker", "run"]


class Platform:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.kube = Kube(KubernetesSettings(kubeconfig=stack.ctx.kubeconfig))
        state = stack.settings.state_dir
        self.pid_path = state / "operator.pid"
        self.log_path = state / "logs" / "operator.log"
        self.health_port = stack.settings.ports.operator_health
        self.api_pid_path = state / "api.pid"
        self.api_log_path = state / "logs" / "api.log"
        self.worker_pid_path = state / "demo-worker.pid"
        self.worker_log_path = state / "logs" / "demo-worker.log"
        self.api_port = stack.settings.ports.api
        self.worker_port = stack.settings.ports.demo_worker

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
        url = f"http://127.0.0.1:{self.health_port}"
        self._wait(
            lambda: self._healthy("operator", self.pid_path, self.log_path, url),
            "operator /healthz",
        )
        say(f"  [green]✓[/green] operator running (log: {self.log_path})")
        record = processes.running(self.pid_path)
        assert record is not None
        return record.pid

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

    def start_api(self) -> str:
        """The tenant API (open gateway: API tokens) on loopback; return its URL."""
        port = self.api_port
        url = f"http://127.0.0.1:{port}"
        self._start(api_command(port), self.api_pid_path, self.api_log_path, self.stack.api_env())
        self._wait(lambda: self._healthy("API", self.api_pid_path, self.api_log_path, url), "API")
        say(f"  [green]✓[/green] API at {url} (log: {self.api_log_path})")
        return url

    def start_worker(self, tenant: str) -> None:
        """One worker for `tenant`, with the environment its Deployment would give it."""
        names = TenantNames(tenant=tenant)
        secret = self.kube.secret_data(names.namespace, names.secret)
        if not secret:
            raise ComponentFailed(f"Tenant {tenant} has no connection Secret yet")
        port = self.worker_port
        env = {
            **secret,
            "ANNOSTACK_WORKER_PORT": str(port),
            "ANNOSTACK_WORKER_BIND_ADDRESS": "127.0.0.1",
        }
        self._start(WORKER_COMMAND, self.worker_pid_path, self.worker_log_path, env)
        url = f"http://127.0.0.1:{port}"
        self._wait(
            lambda: self._healthy("worker", self.worker_pid_path, self.worker_log_path, url),
            f"worker of {tenant}",
        )
        say(f"  [green]✓[/green] worker of {tenant} running (log: {self.worker_log_path})")

    @staticmethod
    def _start(command: list[str], pid: Path, log: Path, env: dict[str, str]) -> None:
        if processes.running(pid) is None:
            processes.spawn(command, pid_path=pid, log_path=log, cwd=pid.parent, env=env)

    @staticmethod
    def _healthy(what: str, pid: Path, log: Path, url: str) -> bool:
        if processes.running(pid) is None:
            raise ComponentFailed(f"the {what} exited:\n{last_lines(log)}")
        try:
            return http_get(f"{url}/healthz").status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for what, pid in (
            ("demo worker", self.worker_pid_path),
            ("API", self.api_pid_path),
            ("operator", self.pid_path),
        ):
            if processes.stop(pid):
                say(f"  stopped {what}")

    @staticmethod
    def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ComponentFailed(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.5)
