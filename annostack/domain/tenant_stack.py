"""What a tenant's Kubernetes namespace holds, as manifests built from its spec (pure).

The namespace, its ServiceAccount, ResourceQuota, LimitRange, default-deny NetworkPolicy with
the allowances workers need, the connection Secret and the worker Deployment. The operator
server-side-applies them in this order.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field, SecretStr

from annostack.domain.models import CamelModel, quantity_bytes
from annostack.domain.tenants import PROCESSING_TOPICS, TenantNames, TenantSpec

Manifest = dict[str, Any]
MANAGED_BY = {"app.kubernetes.io/managed-by": "annostack-operator"}
RANCHER_PROJECT_ANNOTATION = "field.cattle.io/projectId"
WORKER_PORT = 8080  # health and /metrics
READINESS_PERIOD_SECONDS = 2  # /readyz reads a flag: cheap to ask often
CREDENTIALS_ANNOTATION = "annostack.io/credentials"
# The worker's /tmp (its root file system is read-only): where exports spool the files that
# span a dataset (COCO's annotations, nuScenes' tables) past 8 MiB each. 100,000 frames of 30
# boxes make ~2 GiB of nuScenes tables; past the limit the kubelet evicts the pod.
WORKER_SCRATCH = "4Gi"


class TenantConnection(CamelModel):
    """Connection details handed to a tenant's workers (and the API) through its Secret.

    Keys are the environment variables the worker reads, so the Deployment can take the whole
    Secret with `envFrom`.
    """

    tenant: str
    db_host: str
    db_port: int
    db_user: str
    db_password: SecretStr
    db_tls: str
    database: str
    s3_endpoint: str
    s3_region: str
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    bucket: str
    pulsar_service_url: str
    pulsar_namespace: str
    # Empty for a broker without authentication (and in Secrets written before it existed).
    pulsar_token: SecretStr = Field(default=SecretStr(""), repr=False)
    redis_url: SecretStr = Field(repr=False)

    def to_env(self) -> dict[str, str]:
        values = self.model_dump()
        return {
            f"ANNOSTACK_TENANT__{key.upper()}": (
                value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            )
            for key, value in values.items()
        }

    @classmethod
    def from_env(cls, env: dict[str, str]) -> TenantConnection:
        prefix = "ANNOSTACK_TENANT__"
        return cls.model_validate(
            {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}
        )


def _meta(name: str, names: TenantNames, namespace: bool = True) -> Manifest:
    meta: Manifest = {
        "name": name,
        "labels": {**MANAGED_BY, "annostack.io/tenant": names.tenant},
    }
    if namespace:
        meta["namespace"] = names.namespace
    return meta


def namespace(names: TenantNames, spec: TenantSpec) -> Manifest:
    meta = _meta(names.namespace, names, namespace=False)
    # Workers run unprivileged: enforce the restricted Pod Security Standard.
    meta["labels"]["pod-security.kubernetes.io/enforce"] = "restricted"
    if spec.rancher_project:
        meta["annotations"] = {RANCHER_PROJECT_ANNOTATION: spec.rancher_project}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(names: TenantNames) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(names.workers, names),
        "automountServiceAccountToken": False,
    }


def _scaled(quantity: str, factor: int) -> str:
    """`quantity` times `factor` as a Kubernetes quantity string (keeps the unit suffix)."""
    digits = quantity.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = quantity[len(digits) :]
    number = float(digits) * factor
    return f"{int(number) if number.is_integer() else number}{unit}"


def resource_quota(names: TenantNames, spec: TenantSpec) -> Manifest:
    # Room for a rolling update's surge pod on top of the maximum, in pods and in resources:
    # without the surge's CPU and memory, a rollout at the maximum (or one replacing pods that
    # never started) is refused by the quota and never finishes (seen on the local node).
    pods = spec.workers.max_replicas + 1
    cpu, memory = spec.plan.worker_cpu, spec.plan.worker_memory
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta("tenant-quota", names),
        "spec": {
            "hard": {
                "requests.cpu": _scaled(cpu, pods),
                "limits.cpu": _scaled(cpu, pods),
                "requests.memory": _scaled(memory, pods),
                "limits.memory": _scaled(memory, pods),
                "pods": str(pods),
            }
        },
    }


def limit_range(names: TenantNames, spec: TenantSpec) -> Manifest:
    size = {"cpu": spec.plan.worker_cpu, "memory": spec.plan.worker_memory}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta("tenant-limits", names),
        "spec": {"limits": [{"type": "Container", "default": size, "defaultRequest": size}]},
    }


def network_policy(names: TenantNames, backend_ports: list[int]) -> Manifest:
    """Deny everything, then allow DNS, the backends' ports, and metrics scrapes."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("default-deny-with-backends", names),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"annostack.io/role": "monitoring"}}}
                    ],
                    "ports": [{"protocol": "TCP", "port": WORKER_PORT}],
                }
            ],
            "egress": [
                {
                    "ports": [
                        {"protocol": "UDP", "port": 53},
                        {"protocol": "TCP", "port": 53},
                    ]
                },
                {
                    "ports": [
                        {"protocol": "TCP", "port": port} for port in sorted(set(backend_ports))
                    ]
                },
            ],
        },
    }


def connection_secret(
    names: TenantNames, connection: TenantConnection, annotations: dict[str, str]
) -> Manifest:
    """The Secret, annotated with its credentials' generation and rotation state."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**_meta(names.secret, names), "annotations": annotations},
        "type": "Opaque",
        "stringData": connection.to_env(),
    }


def api_secret(names: TenantNames, password: str) -> Manifest:
    """The API's own DB user for this tenant: readable by the API, never mounted by workers."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names.api_secret, names),
        "type": "Opaque",
        "stringData": {
            "ANNOSTACK_TENANT__DB_USER": names.api_db_user,
            "ANNOSTACK_TENANT__DB_PASSWORD": password,
        },
    }


def credentials_digest(connection: TenantConnection) -> str:
    """A hash of the Secret's values for the pod template: a new value rolls the workers."""
    env = connection.to_env()
    text = "\n".join(f"{key}={env[key]}" for key in sorted(env))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def worker_labels(names: TenantNames) -> dict[str, str]:
    return {"app.kubernetes.io/name": "annostack-worker", "annostack.io/tenant": names.tenant}


def worker_deployment(
    names: TenantNames, spec: TenantSpec, replicas: int, image: str, credentials: str = ""
) -> Manifest:
    labels = worker_labels(names)
    size = {"cpu": spec.plan.worker_cpu, "memory": spec.plan.worker_memory}
    probe = {"httpGet": {"path": "/healthz", "port": WORKER_PORT}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_meta(names.workers, names), "labels": {**MANAGED_BY, **labels}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {CREDENTIALS_ANNOTATION: credentials},
                },
                "spec": {
                    "serviceAccountName": names.workers,
                    # Workers finish or hand back their message within this window.
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "worker",
                            "image": image,
                            "args": ["worker", "run"],
                            "envFrom": [{"secretRef": {"name": names.secret}}],
                            "env": [
                                {
                                    "name": "ANNOSTACK_WORKER_TOPICS",
                                    "value": ",".join(PROCESSING_TOPICS),
                                },
                                {  # no archive may unpack to more than the tenant may store
                                    "name": "ANNOSTACK_WORKER_ARCHIVE_BUDGET_BYTES",
                                    "value": str(quantity_bytes(spec.plan.storage)),
                                },
                            ],
                            "ports": [{"name": "http", "containerPort": WORKER_PORT}],
                            "resources": {"requests": size, "limits": size},
                            "livenessProbe": probe,
                            # Every 2 s, not 10: a new worker counts as Ready (and its
                            # rollout or scale-up as done) within 2 s of subscribing; the
                            # check is a flag read (bench/node_bench.py measures the gain).
                            "readinessProbe": {
                                **probe,
                                "httpGet": {"path": "/readyz", "port": WORKER_PORT},
                                "periodSeconds": READINESS_PERIOD_SECONDS,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True,
                            },
                            # A mount path in the pod, not a file this process opens.
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": WORKER_SCRATCH}}],
                },
            },
        },
    }
