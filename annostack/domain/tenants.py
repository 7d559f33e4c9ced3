"""The Tenant resource: its spec and status, and the names of everything it owns.

A tenant's name becomes part of a Kubernetes namespace (``tenant-<name>``), a TiDB schema and
user, an S3 bucket and a Pulsar tenant. The tightest of those limits is the MySQL/TiDB user
name (32 characters), so tenant names are at most 24 characters of lowercase DNS label: that
leaves room for the ``u_`` prefix and keeps every derived name valid everywhere.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, model_validator

from annostack.domain.conditions import Conditions
from annostack.domain.models import CamelModel, Quantity

API_GROUP = "annostack.io"
API_VERSION = "v1alpha1"
MAX_NAME_LENGTH = 24
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Processing topics each tenant gets, created with their subscription up front so that
# autoscalers never point at a subscription that does not exist yet.
# `media` carries video, audio and text (the FileKind -> topic map is in domain.items).
PROCESSING_TOPICS = ("thumbnails", "pointclouds", "media", "archives", "exports")
DEAD_LETTER_TOPIC = "dead-letter"
WORKER_SUBSCRIPTION = "workers"


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class Plan(CamelModel):
    """Quotas and sizes a tenant is entitled to."""

    storage: Quantity = Field(
        default="100Gi",
        description=(
            "Object-storage quota of the tenant's bucket: set on the store where it has quotas "
            "(SeaweedFS), and checked by the API before every upload (403 above it)."
        ),
    )
    max_datasets: int = Field(
        default=100,
        ge=1,
        description="Datasets the tenant may have, through the API and as Dataset resources.",
    )
    request_units_per_second: int = Field(
        default=2000,
        ge=1,
        description="TiDB RU_PER_SEC of the tenant's resource group (TiDB only).",
    )
    backlog_quota: Quantity = Field(
        default="2Gi", description="Pulsar backlog quota per processing topic."
    )
    message_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Unacknowledged messages expire after this."
    )
    worker_cpu: Quantity = Field(default="1", description="CPU request and limit per worker.")
    worker_memory: Quantity = Field(default="1Gi", description="Memory per worker.")


class WorkerScaling(CamelModel):
    """Bounds for the queue-depth autoscaler of the tenant's workers."""

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError("workers.minReplicas must not exceed workers.maxReplicas")
        return self

    min_replicas: int = Field(default=0, ge=0, le=100, description="Lower bound; 0 = idle to 0.")
    max_replicas: int = Field(default=4, ge=1, le=100, description="Upper bound.")
    target_backlog_per_replica: int = Field(
        default=100, ge=1, description="Queued messages one worker is expected to handle."
    )
    scale_down_stabilization_seconds: int = Field(
        default=300, ge=0, le=3600, description="Wait this long after a drop before scaling in."
    )


class TenantSpec(CamelModel):
    """Desired state of a tenant."""

    display_name: str = Field(min_length=1, max_length=128, description="Shown in UIs.")
    # Full defaults in the schema, so the apiserver fills in an omitted section (and its CEL
    # rules, which are checked against the default too, see every key).
    plan: Plan = Field(
        default_factory=Plan,
        description="Quotas and sizes.",
        json_schema_extra={"default": Plan().model_dump(mode="json", by_alias=True)},
    )
    workers: WorkerScaling = Field(
        default_factory=WorkerScaling,
        description="Worker scaling bounds.",
        json_schema_extra={"default": WorkerScaling().model_dump(mode="json", by_alias=True)},
    )
    worker_image: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Container image of the tenant's workers; unset, the operator's default "
            "(ANNOSTACK_DEFAULT_WORKER_IMAGE, the worker released with it)."
        ),
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description=(
            "Retain keeps the database, bucket and queues when the Tenant is deleted and "
            "removes only compute; Delete removes everything."
        ),
    )
    paused: bool = Field(default=False, description="While true, no backend is changed.")
    rancher_project: str | None = Field(
        default=None,
        max_length=128,
        description="Rancher project id (c-xxxxx:p-xxxxx) to put the namespace in.",
    )


class TenantStatus(CamelModel):
    """Observed state of a tenant."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation the status reflects."
    )
    phase: str | None = Field(
        default=None, description="Ready, Reconciling, Stalled, Paused or Deleting."
    )
    namespace: str | None = Field(default=None, description="The tenant's namespace.")
    database: str | None = Field(default=None, description="The tenant's TiDB schema.")
    bucket: str | None = Field(default=None, description="The tenant's bucket.")
    pulsar_namespace: str | None = Field(
        default=None, description="The tenant's Pulsar tenant/namespace."
    )
    backlog: int | None = Field(
        default=None, description="Messages waiting for the workers (all processing topics)."
    )
    replicas: int | None = Field(
        default=None, description="Worker replicas the autoscaler last set."
    )
    autoscaler: Literal["builtin", "keda"] | None = Field(
        default=None,
        description=(
            "What scales the workers: the operator's own scaler (builtin), or a KEDA "
            "ScaledObject (keda, where KEDA's API is served; backlog and replicas are then KEDA's)."
        ),
    )
    conditions: Conditions = Field(default_factory=list)


class TenantNames(CamelModel):
    """Every backend name derived from a tenant's name, in one place."""

    tenant: str

    @property
    def namespace(self) -> str:
        return f"tenant-{self.tenant}"

    @classmethod
    def of_namespace(cls, namespace: str) -> TenantNames | None:
        """The tenant whose namespace this is (Datasets and ProcessingJobs live there)."""
        prefix = "tenant-"
        return cls(tenant=namespace[len(prefix) :]) if namespace.startswith(prefix) else None

    @property
    def database(self) -> str:
        return "t_" + self.tenant.replace("-", "_")

    @property
    def db_user(self) -> str:
        return "u_" + self.tenant.replace("-", "_")

    @property
    def api_db_user(self) -> str:
        """The API's user in the tenant's schema (it alone may touch `api_tokens`)."""
        return "a_" + self.tenant.replace("-", "_")

    @property
    def api_secret(self) -> str:
        """The API's DB credentials for this tenant; workers never mount it."""
        return "annostack-api-connection"

    @property
    def bucket(self) -> str:
        return f"annostack-{self.tenant}"

    @property
    def pulsar_tenant(self) -> str:
        return f"annostack-{self.tenant}"

    @property
    def pulsar_namespace(self) -> str:
        return f"{self.pulsar_tenant}/processing"

    @property
    def identity(self) -> str:
        """The tenant's own user in the object store (IAM) and in Redis (ACL).

        `tenant-` keeps it apart from the platform's own users (`annostack-*`): a tenant named
        `api` must not become the API's Redis user.
        """
        return f"tenant-{self.tenant}"

    def pulsar_role(self, generation: int) -> str:
        """The tenant's Pulsar role; a credential rotation moves it to the next generation."""
        return f"tenant-{self.tenant}.g{int(generation)}"

    def is_pulsar_role(self, role: str) -> bool:
        return role.startswith(f"tenant-{self.tenant}.g")

    @property
    def secret(self) -> str:
        return "annostack-connection"

    @property
    def workers(self) -> str:
        return "workers"

    def topic(self, name: str) -> str:
        return f"persistent://{self.pulsar_namespace}/{name}"
