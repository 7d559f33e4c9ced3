"""annostack itself on the local stack's node, as a platform team would run it.

Used by `annostack dev platform` (the README's first command) and the e2e tier. The images are
built from the tree's Dockerfiles and loaded into the node (`images.py`); the `local` overlay
(manifests/overlays/local) is rendered with kustomize, pointed at those images and applied with
server-side apply, beside the objects it expects and this stack generates (the endpoints
ConfigMap and the credential Secrets). The operator and the API then run as pods under their
own ServiceAccounts and the base's least-privilege RBAC; the demo Tenant's workers are pods the
operator scales. Nothing here starts a process on the host.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from annostack.adapters.kube import Kube
from annostack.devstack import builds
from annostack.devstack.console import say
from annostack.devstack.images import ImageSet, ensure_images
from annostack.devstack.node import Containerd
from annostack.devstack.stack import ComponentFailed, Stack
from annostack.domain.tenants import API_GROUP, API_VERSION
from annostack.domain.workloads import DeploymentHealth, deployment_health, needs_pod_details
from annostack.settings import KubernetesSettings

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "manifests" / "overlays" / "local"
DEMO_TENANT = ROOT / "examples" / "tenant.yaml"
PEERING_CRD = ROOT / "manifests" / "base" / "operator" / "kopf-peering-crd.yaml"
NAMESPACE = "annostack-system"
OPERATOR = "annostack-operator"
API = "annostack-api"
API_NODE_PORT = 30080  # the overlay's NodePort for the API Service
PUBLISHED_IMAGES = "registry.gitlab.com/annostack/annostack/"
READY_TIMEOUT_SECONDS = 180.0
FIELD_MANAGER = "annostack-dev"

# Which client settings of the stack go where in the cluster (keys are environment variables).
ENDPOINT_KEYS = (
    "ANNOSTACK_DB__HOST",
    "ANNOSTACK_DB__PORT",
    "ANNOSTACK_DB__TLS",
    "ANNOSTACK_S3__ENDPOINT",
    "ANNOSTACK_PULSAR__SERVICE_URL",
    "ANNOSTACK_PULSAR__ADMIN_URL",
    "ANNOSTACK_PULSAR__CLUSTER",
)
SECRET_KEYS = {
    "annostack-tidb": ("ANNOSTACK_DB__ADMIN_USER", "ANNOSTACK_DB__ADMIN_PASSWORD"),
    "annostack-s3": ("ANNOSTACK_S3__ACCESS_KEY", "ANNOSTACK_S3__SECRET_KEY"),
}
# Each of the two gets its own Redis user and Pulsar role (manifests/base/config/endpoints.yaml);
# only the operator holds the key that signs tenants' Pulsar tokens.
OPERATOR_IDENTITY_KEYS = (
    "ANNOSTACK_REDIS__URL",
    "ANNOSTACK_PULSAR__TOKEN",
    "ANNOSTACK_PULSAR__TOKEN_SIGNING_KEY",
    "ANNOSTACK_PULSAR__API_ROLE",
)
API_IDENTITY_KEYS = ("ANNOSTACK_REDIS__URL", "ANNOSTACK_PULSAR__TOKEN")


def install_crds(kube: Kube) -> None:
    """Our CRDs (crds/) and kopf's peering CRD, until established; then the peering object.

    What a host operator needs on a stack where the platform is not deployed (the operator
    tests, the operator benchmarks); `Platform.deploy` applies the same with the overlay.
    """
    later = []
    for path in [*sorted((ROOT / "crds").glob("*.yaml")), PEERING_CRD]:
        for doc in documents(path.read_text()):
            if doc["kind"] == "CustomResourceDefinition":
                kube.apply(doc)
            else:
                later.append(doc)
    wanted = {f"{plural}.{API_GROUP}" for plural in ("tenants", "datasets", "processingjobs")}
    wanted.add("clusterkopfpeerings.kopf.dev")
    Platform._wait(lambda: wanted <= kube.established_crds(), "CRDs established")
    for doc in later:
        kube.apply(doc)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def with_images(objects: list[dict[str, Any]], refs: dict[str, str]) -> list[dict[str, Any]]:
    """Point every container at the locally built image of the same name (operator, api)."""
    for obj in objects:
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in pod.get("containers", []):
            name = container["image"].removeprefix(PUBLISHED_IMAGES).split(":")[0]
            if container["image"].startswith(PUBLISHED_IMAGES) and name in refs:
                container["image"] = refs[name]
    return objects


def config_objects(
    env: dict[str, str], api_env: dict[str, str], api_secrets: dict[str, str]
) -> list[dict[str, Any]]:
    """The endpoints ConfigMap and credential Secrets the local overlay expects.

    `env` is the operator's settings (`Stack.client_env`), `api_env` the API's (`Stack.api_env`).
    """
    endpoints = {key: env[key] for key in ENDPOINT_KEYS}
    endpoints["ANNOSTACK_ENVIRONMENT"] = "dev"
    endpoints["ANNOSTACK_DEFAULT_WORKER_IMAGE"] = env["ANNOSTACK_DEFAULT_WORKER_IMAGE"]
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "annostack"}}
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "annostack-endpoints", **meta},
            "data": endpoints,
        }
    ]
    secrets = {name: {key: env[key] for key in keys} for name, keys in SECRET_KEYS.items()}
    secrets["annostack-api"] = api_secrets
    secrets["annostack-operator-identities"] = {key: env[key] for key in OPERATOR_IDENTITY_KEYS}
    secrets["annostack-api-identities"] = {key: api_env[key] for key in API_IDENTITY_KEYS}
    for name, data in secrets.items():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, **meta},
                "type": "Opaque",
                "stringData": data,
            }
        )
    return objects


class Platform:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.kube = Kube(KubernetesSettings(kubeconfig=stack.ctx.kubeconfig))
        self._images: ImageSet | None = None

    @property
    def images(self) -> ImageSet:
        """The images `deploy` put on the node."""
        if self._images is None:
            raise ComponentFailed("the platform is not deployed yet (call deploy first)")
        return self._images

    @property
    def api_url(self) -> str:
        return f"http://{self.stack.settings.node.address}:{API_NODE_PORT}"

    def load_images(self) -> ImageSet:
        """The images built from the tree (cached by their inputs), loaded into the node."""
        built = ensure_images(self.stack.settings)
        built.load_into_containerd(self.stack.ctx.data_dir(Containerd.name) / "containerd.sock")
        say("  [green]✓[/green] images loaded into the node")
        return built

    def deploy(self, built: ImageSet) -> None:
        """The local overlay, with the stack's endpoints and credentials, on the node."""
        kustomize = builds.ensure_kustomize(self.stack.settings)
        rendered = subprocess.run(
            [str(kustomize), "build", str(OVERLAY)], capture_output=True, text=True, check=True
        ).stdout
        refs = {"operator": built.operator.ref, "api": built.api.ref}
        objects = with_images(documents(rendered), refs)
        crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
        self._apply(crds)
        self._wait(lambda: self.kube.has_api("kopf.dev/v1", "ClusterKopfPeering"), "CRDs served")
        env = self.stack.client_env()
        credentials = self.stack.ctx.credentials
        api_secrets = {
            "ANNOSTACK_API_SESSION_KEY": credentials.api_session_key,
            "ANNOSTACK_API_ADMIN_TOKEN": credentials.api_admin_token,
        }
        rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
        namespaces = [o for o in rest if o["kind"] == "Namespace"]
        self._apply([*namespaces, *config_objects(env, self.stack.api_env(), api_secrets)])
        self._apply([o for o in rest if o["kind"] != "Namespace"])
        self._images = built
        for name in (OPERATOR, API):
            self.wait_available(name)
        say(f"  [green]✓[/green] operator and API running in {NAMESPACE} (API at {self.api_url})")

    def _apply(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            self.kube.apply(obj)

    def deployment_health(self, name: str, namespace: str = NAMESPACE) -> DeploymentHealth:
        found = self.kube.get("apps/v1", "Deployment", name, namespace)
        deployment = found.to_dict() if found is not None else None
        pods = []
        if deployment is not None and needs_pod_details(deployment):
            labels = deployment["spec"]["selector"]["matchLabels"]
            selector = ",".join(f"{k}={v}" for k, v in labels.items())
            pods = self.kube.list_objects("v1", "Pod", namespace, selector)
        return deployment_health(deployment, pods)

    def wait_available(self, name: str, namespace: str = NAMESPACE) -> None:
        """Until the Deployment's pods are available; on timeout, the reason they are not."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not (health := self.deployment_health(name, namespace)).ready:
            if time.monotonic() > deadline:
                raise ComponentFailed(f"{namespace}/{name}: {health.reason}: {health.message}")
            time.sleep(1.0)

    def apply_demo(self) -> str:
        (tenant,) = documents(DEMO_TENANT.read_text())
        self.kube.apply(tenant)
        name: str = tenant["metadata"]["name"]
        self._wait(lambda: self.tenant_ready(name), f"Tenant {name} Ready", READY_TIMEOUT_SECONDS)
        say(f"  [green]✓[/green] Tenant {name} Ready")
        return name

    def tenant_ready(self, name: str) -> bool:
        tenant = self.kube.get(f"{API_GROUP}/{API_VERSION}", "Tenant", name)
        conditions = (tenant.to_dict().get("status") or {}).get("conditions", []) if tenant else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def scale_operator(self, replicas: int) -> int:
        """Set the in-cluster operator's replicas; return the previous count (0 if absent)."""
        found = self.kube.get("apps/v1", "Deployment", OPERATOR, NAMESPACE)
        if found is None:
            return 0
        previous = int(found.spec.replicas or 0)
        self.kube.scale_deployment(NAMESPACE, OPERATOR, replicas)
        return previous

    @contextmanager
    def operator_paused(self) -> Iterator[int]:
        """The in-cluster operator at 0 replicas for the block (yields its replicas before).

        For a host operator (`host_operator.py`) that must be the only one: two would share
        kopf's peering and handle the same objects. Its pods are awaited gone, since a pod
        being terminated still handles events; the replicas come back however the block ends.
        """
        replicas = self.scale_operator(0)
        try:
            if replicas:
                say(f"  paused the in-cluster operator ({replicas} replica(s))")
                self._wait(
                    lambda: not self._operator_pods(),
                    "in-cluster operator stopped",
                    READY_TIMEOUT_SECONDS,  # beyond its pods' grace period (60 s)
                )
            yield replicas
        finally:
            if replicas:
                self.scale_operator(replicas)
                say(f"  restored the in-cluster operator ({replicas} replica(s))")

    def _operator_pods(self) -> list[dict[str, Any]]:
        found = self.kube.get("apps/v1", "Deployment", OPERATOR, NAMESPACE)
        if found is None:
            return []
        labels = found.to_dict()["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        return self.kube.list_objects("v1", "Pod", NAMESPACE, selector)

    @staticmethod
    def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ComponentFailed(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.5)
