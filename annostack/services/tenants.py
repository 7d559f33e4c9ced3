"""Tenant provisioning: turn a Tenant spec into its namespace, database, bucket, queues, workers.

`reconcile` runs every step in order and never stops at the first failure: each step reports
its own condition (NamespaceReady, DatabaseReady, BucketReady, MessagingReady, WorkersReady),
so one backend being down does not hide the state of the others. Steps are idempotent and
check actual state, which is what makes the periodic drift pass a repair pass too: whatever a
step had to change is returned in `repaired`.

`teardown` honours the deletion policy: Retain keeps the schema, user, bucket and Pulsar
namespace and removes compute (the namespace); Delete removes everything.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from annostack.adapters.database import DatabaseAdmin, engine_for
from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_admin import NamespacePolicies, PulsarAdmin
from annostack.adapters.tenant_tables import migrate
from annostack.domain import tenant_stack
from annostack.domain.conditions import ConditionType
from annostack.domain.errors import (
    Backend,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    WorkloadNotReady,
)
from annostack.domain.models import quantity_bytes
from annostack.domain.tenant_stack import Manifest, TenantConnection
from annostack.domain.tenants import (
    DEAD_LETTER_TOPIC,
    PROCESSING_TOPICS,
    WORKER_SUBSCRIPTION,
    DeletionPolicy,
    TenantNames,
    TenantSpec,
)
from annostack.domain.workloads import DeploymentHealth, deployment_health, needs_pod_details
from annostack.settings import Settings

PASSWORD_KEY = "ANNOSTACK_TENANT__DB_PASSWORD"  # noqa: S105 (a key name, not a password)
NO_RESOURCE_GROUPS = (
    "request-unit limit not enforced: this MySQL-compatible server has no resource groups "
    "(TiDB only)"
)
NO_BUCKET_QUOTA = (
    "storage quota not enforced by the S3 API; set it on the server "
    "(MinIO: mc quota set; SeaweedFS: s3.bucket.quota)"
)

# What a step changed, and a note for its condition's message (a limitation, never an error).
Outcome = tuple[list[str], str]


@dataclass(frozen=True)
class StepResult:
    condition: ConditionType
    ok: bool
    reason: str
    message: str
    temporary: bool = False


@dataclass
class ReconcileReport:
    results: list[StepResult] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failures(self) -> list[StepResult]:
        return [result for result in self.results if not result.ok]


@dataclass
class TeardownReport:
    removed: list[str] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)
    errors: list[BackendError] = field(default_factory=list)


class Backends:
    """The clients a provisioner talks to; built once per operator process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kube = Kube(settings.kubernetes)
        self.db = DatabaseAdmin(settings.db)
        self.s3 = ObjectStoreAdmin(settings.s3)
        self.pulsar = PulsarAdmin(settings.pulsar)

    def close(self) -> None:
        self.pulsar.close()
        self.db.close()
        self.kube.close()


class TenantProvisioner:
    def __init__(self, backends: Backends) -> None:
        self.b = backends
        self.settings = backends.settings

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, tenant: str, spec: TenantSpec) -> ReconcileReport:
        names = TenantNames(tenant=tenant)
        report = ReconcileReport()
        password = self._database_password(names)
        steps: list[tuple[ConditionType, str, Callable[[], Outcome]]] = [
            (
                ConditionType.NAMESPACE_READY,
                "NamespaceProvisioned",
                lambda: self._namespace(names, spec, password),
            ),
            (
                ConditionType.DATABASE_READY,
                "SchemaProvisioned",
                lambda: self._database(names, spec, password),
            ),
            (ConditionType.BUCKET_READY, "BucketProvisioned", lambda: self._bucket(names)),
            (
                ConditionType.MESSAGING_READY,
                "TopicsProvisioned",
                lambda: self._messaging(names, spec),
            ),
            (ConditionType.WORKERS_READY, "PodsAvailable", lambda: self._workers(names, spec)),
        ]
        for condition, reason, step in steps:
            report.results.append(self._run(condition, step, reason, report))
        return report

    @staticmethod
    def _run(
        condition: ConditionType,
        step: Callable[[], Outcome],
        reason: str,
        report: ReconcileReport,
    ) -> StepResult:
        try:
            changed, note = step()
        except WorkloadNotReady as error:
            return StepResult(condition, False, error.reason, str(error), temporary=True)
        except BackendError as error:
            temporary = isinstance(error, BackendUnavailable)
            return StepResult(
                condition,
                ok=False,
                reason="BackendUnavailable" if temporary else "BackendRejected",
                message=str(error),
                temporary=temporary,
            )
        report.repaired += changed
        return StepResult(condition, ok=True, reason=reason, message=note)

    def _database_password(self, names: TenantNames) -> str | None:
        """The tenant's DB password: the one in its Secret, a new one if there is no Secret,
        or None when the Secret cannot be read — then no step may rotate the password (the
        workers would lose their database until the Secret could be written again)."""
        try:
            existing = self.b.kube.secret_data(names.namespace, names.secret)
        except BackendError:
            return None
        if existing and existing.get(PASSWORD_KEY):
            return existing[PASSWORD_KEY]
        return secrets.token_urlsafe(24)

    @staticmethod
    def _known(password: str | None) -> str:
        if password is None:
            raise BackendUnavailable(Backend.KUBERNETES, "cannot read the tenant's Secret")
        return password

    def connection(self, names: TenantNames, password: str) -> TenantConnection:
        s = self.settings
        return TenantConnection(
            tenant=names.tenant,
            db_host=s.db.host,
            db_port=s.db.port,
            db_user=names.db_user,
            db_password=password,
            db_tls=s.db.tls,
            database=names.database,
            s3_endpoint=s.s3.endpoint,
            s3_region=s.s3.region,
            s3_access_key=s.s3.access_key,
            s3_secret_key=s.s3.secret_key,
            bucket=names.bucket,
            pulsar_service_url=s.pulsar.service_url,
            pulsar_namespace=names.pulsar_namespace,
            redis_url=s.redis.url,
        )

    def _backend_ports(self) -> list[int]:
        s = self.settings
        urls = [
            s.s3.endpoint,
            s.pulsar.service_url,
            s.pulsar.admin_url,
            s.redis.url.get_secret_value(),
        ]
        return [s.db.port, *(urlsplit(url).port or 443 for url in urls)]

    def _namespace(self, names: TenantNames, spec: TenantSpec, password: str | None) -> Outcome:
        manifests = [
            tenant_stack.namespace(names, spec),
            tenant_stack.service_account(names),
            tenant_stack.resource_quota(names, spec),
            tenant_stack.limit_range(names, spec),
            tenant_stack.network_policy(names, self._backend_ports()),
            tenant_stack.connection_secret(names, self.connection(names, self._known(password))),
        ]
        return self._apply_all(manifests), ""

    def _apply_all(self, manifests: list[tenant_stack.Manifest]) -> list[str]:
        changed = []
        for manifest in manifests:
            applied = self.b.kube.apply(manifest)
            if applied.changed:
                changed.append(f"{applied.kind}/{applied.name}")
        return changed

    def _database(self, names: TenantNames, spec: TenantSpec, secret: str | None) -> Outcome:
        password = self._known(secret)
        changed = []
        if self.b.db.ensure_schema(names.database):
            changed.append(f"schema/{names.database}")
        if self.b.db.ensure_user(names.db_user, password, names.database):
            changed.append(f"user/{names.db_user}")
        note = ""
        if not self.b.db.supports_resource_groups():
            note = NO_RESOURCE_GROUPS
        elif self.b.db.ensure_resource_group(
            names.db_user, spec.plan.request_units_per_second, names.db_user
        ):
            changed.append(f"resource-group/{names.db_user}")
        # Migrations run as the tenant's own user: they can only ever touch its schema.
        engine = engine_for(self.settings.db, names.db_user, password, names.database)
        try:
            migrate(engine)
        except Exception as error:  # alembic/DBAPI errors; the message carries no secrets
            raise BackendRejected(Backend.DATABASE, f"migration failed: {error}") from error
        finally:
            engine.dispose()
        return changed, note

    def _bucket(self, names: TenantNames) -> Outcome:
        changed = [f"bucket/{names.bucket}"] if self.b.s3.ensure_bucket(names.bucket) else []
        return changed, NO_BUCKET_QUOTA

    def _messaging(self, names: TenantNames, spec: TenantSpec) -> Outcome:
        pulsar, namespace = self.b.pulsar, names.pulsar_namespace
        changed = []
        if pulsar.ensure_tenant(names.pulsar_tenant):
            changed.append(f"pulsar-tenant/{names.pulsar_tenant}")
        if pulsar.ensure_namespace(namespace):
            changed.append(f"pulsar-namespace/{namespace}")
        policies = NamespacePolicies(
            backlog_quota_bytes=quantity_bytes(spec.plan.backlog_quota),
            message_ttl_seconds=spec.plan.message_ttl_seconds,
        )
        if pulsar.ensure_policies(namespace, policies):
            changed.append(f"pulsar-policies/{namespace}")
        for topic in (*PROCESSING_TOPICS, DEAD_LETTER_TOPIC):
            if pulsar.ensure_topic(namespace, topic):
                changed.append(f"topic/{topic}")
            if pulsar.ensure_subscription(namespace, topic, WORKER_SUBSCRIPTION):
                changed.append(f"subscription/{topic}/{WORKER_SUBSCRIPTION}")
        return changed, ""

    def _workers(self, names: TenantNames, spec: TenantSpec) -> Outcome:
        current = self.b.kube.get("apps/v1", "Deployment", names.workers, names.namespace)
        # The autoscaler owns the replica count; apply keeps it, clamped to the spec's bounds.
        replicas = spec.workers.min_replicas if current is None else current.spec.replicas
        replicas = max(spec.workers.min_replicas, min(spec.workers.max_replicas, replicas))
        image = spec.worker_image or self.settings.default_worker_image
        manifest = tenant_stack.worker_deployment(names, spec, replicas, image)
        changed = self._apply_all([manifest])
        health = self.workers_health(names)
        if not health.ready:
            raise WorkloadNotReady(health.reason, health.message)
        return changed, health.message

    def workers_health(self, names: TenantNames) -> DeploymentHealth:
        """Available worker pods versus desired, and the reason when they fall short."""
        deployment = self.b.kube.get("apps/v1", "Deployment", names.workers, names.namespace)
        return self.workers_health_of(names, deployment.to_dict() if deployment else None)

    def workers_health_of(
        self, names: TenantNames, deployment: Manifest | None
    ) -> DeploymentHealth:
        """The same, from a Deployment already read; pods are read only when some are short."""
        pods = []
        if deployment is not None and needs_pod_details(deployment):
            selector = ",".join(f"{k}={v}" for k, v in tenant_stack.worker_labels(names).items())
            pods = self.b.kube.list_objects("v1", "Pod", names.namespace, selector)
        return deployment_health(deployment, pods)

    # -- teardown ----------------------------------------------------------------------------

    def teardown(self, tenant: str, policy: DeletionPolicy) -> TeardownReport:
        names = TenantNames(tenant=tenant)
        report = TeardownReport()
        pulsar, s3 = self.b.pulsar, self.b.s3
        data_steps: list[tuple[str, Callable[[], bool]]] = [
            (
                f"pulsar-tenant/{names.pulsar_tenant}",
                lambda: pulsar.delete_tenant(names.pulsar_tenant),
            ),
            (f"bucket/{names.bucket}", lambda: s3.delete_bucket(names.bucket)),
            (f"user/{names.db_user}", lambda: self.b.db.drop_user(names.db_user)),
            (f"schema/{names.database}", lambda: self.b.db.drop_schema(names.database)),
        ]
        for label, remove in data_steps:
            if policy is DeletionPolicy.RETAIN:
                report.retained.append(label)
                continue
            self._attempt(label, remove, report)
        self._attempt(
            f"namespace/{names.namespace}",
            lambda: self.b.kube.delete("v1", "Namespace", names.namespace),
            report,
        )
        return report

    @staticmethod
    def _attempt(label: str, remove: Callable[[], bool], report: TeardownReport) -> None:
        try:
            remove()
        except BackendError as error:
            report.errors.append(error)
        else:
            report.removed.append(label)
