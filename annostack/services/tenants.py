"""Tenant provisioning: turn a Tenant spec into its namespace, database, bucket, queues, workers.

`reconcile` runs every step in order and never stops at the first failure: each step reports
its own condition (NamespaceReady, DatabaseReady, BucketReady, MessagingReady, WorkersReady),
so one backend being down does not hide the state of the others. Steps are idempotent and
check actual state, which is what makes the periodic drift pass a repair pass too: whatever a
step had to change is returned in `repaired`.

Every backend gets the tenant's own identity, so that nothing holding the tenant's Secret
reaches another tenant: a DB user granted its schema, an object-store user whose policy is its
own bucket, a Redis ACL user limited to its own keys and push channels, a Pulsar role allowed to
produce and consume on its own namespace only. Those credentials are gathered first
(`tenant_credentials.plan`), each backend step establishes its part, and the Secret is written
last, with every value known, together with the workers that read it.

`teardown` honours the deletion policy: Retain keeps the schema, user, bucket and Pulsar
namespace and removes compute (the namespace); Delete removes everything, identities included.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from annostack.adapters.bucket_quota import BucketQuotas, NoQuotas, SeaweedShellQuotas
from annostack.adapters.database import DatabaseAdmin, engine_for
from annostack.adapters.identities import IamIdentities, TenantIdentities
from annostack.adapters.kube import Kube
from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.adapters.pulsar_admin import NamespacePolicies, PulsarAdmin
from annostack.adapters.pulsar_tokens import SecretKeyIssuer, TokenIssuer
from annostack.adapters.redis_acl import RedisAcl, TenantAcl
from annostack.adapters.tenant_tables import API_PRIVILEGES, WORKER_PRIVILEGES, migrate
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
from annostack.services.tenant_credentials import CredentialPlan, StoredSecret, plan
from annostack.settings import Settings

NO_RESOURCE_GROUPS = (
    "request-unit limit not enforced: this MySQL-compatible server has no resource groups "
    "(TiDB only)"
)
NO_BUCKET_QUOTA = (
    "storage quota not enforced: this store has no quota the operator can set "
    "(MinIO: mc quota set; SeaweedFS: set ANNOSTACK_S3__QUOTA=seaweedfs)"
)
NO_PULSAR_AUTH = "no Pulsar token issued: the broker runs without authentication"
# Produce and consume on its own namespace: no admin rights, no functions, no other namespace.
TENANT_ACTIONS = {"produce", "consume"}
API_ACTIONS = {"produce"}  # the API enqueues uploads for every tenant
ROTATION_GRACE_SECONDS = 60.0

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
        self.identities: TenantIdentities = IamIdentities(settings.s3)
        self.quotas: BucketQuotas = _quotas(settings)
        self.pulsar = PulsarAdmin(settings.pulsar)
        key = settings.pulsar.token_signing_key.get_secret_value()
        self.tokens: TokenIssuer | None = SecretKeyIssuer(key) if key else None
        self.redis = RedisAcl(settings.redis.url.get_secret_value())

    def close(self) -> None:
        self.identities.close()
        self.redis.close()
        self.pulsar.close()
        self.db.close()
        self.kube.close()


def _quotas(settings: Settings) -> BucketQuotas:
    s3 = settings.s3
    if s3.quota == "seaweedfs" and s3.seaweedfs_master and s3.seaweedfs_filer:
        return SeaweedShellQuotas(s3.weed_binary, s3.seaweedfs_master, s3.seaweedfs_filer)
    return NoQuotas()


@dataclass
class TenantPass:
    """One reconcile of one tenant: its names, spec and the credentials being established."""

    names: TenantNames
    spec: TenantSpec
    credentials: CredentialPlan | None  # None: the Secret could not be read
    pulsar_token: str = ""

    def known(self) -> CredentialPlan:
        if self.credentials is None:
            raise BackendUnavailable(Backend.KUBERNETES, "cannot read the tenant's Secret")
        return self.credentials


class TenantProvisioner:
    def __init__(
        self, backends: Backends, rotation_grace_seconds: float = ROTATION_GRACE_SECONDS
    ) -> None:
        self.b = backends
        self.settings = backends.settings
        self.rotation_grace = rotation_grace_seconds

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, tenant: str, spec: TenantSpec, rotation: str = "") -> ReconcileReport:
        """Bring every backend in line; `rotation` is the Tenant's rotate-credentials value."""
        names = TenantNames(tenant=tenant)
        report = ReconcileReport()
        run = TenantPass(names, spec, self._plan(names, rotation))
        steps: list[tuple[ConditionType, str, Callable[[], Outcome]]] = [
            (ConditionType.NAMESPACE_READY, "NamespaceProvisioned", lambda: self._namespace(run)),
            (ConditionType.DATABASE_READY, "SchemaProvisioned", lambda: self._database(run)),
            (ConditionType.BUCKET_READY, "BucketProvisioned", lambda: self._bucket(run)),
            (ConditionType.MESSAGING_READY, "TopicsProvisioned", lambda: self._messaging(run)),
            (ConditionType.WORKERS_READY, "PodsAvailable", lambda: self._workers(run)),
        ]
        for condition, reason, step in steps:
            report.results.append(self._run(condition, step, reason, report))
        return report

    def provision(self, tenant: str, spec: TenantSpec, timeout: float = 60.0) -> None:
        """Reconcile again until Ready, as the operator's next passes would (a new worker
        Deployment is WorkersReady only once its controller has observed it: a second or
        two); a failure that is not temporary, or the timeout, raises with the failures."""
        deadline = time.monotonic() + timeout
        while not (report := self.reconcile(tenant, spec)).ready:
            temporary = all(failure.temporary for failure in report.failures)
            if not temporary or time.monotonic() > deadline:
                raise AssertionError(f"Tenant {tenant} not provisioned: {report.failures}")
            time.sleep(0.5)

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

    def _plan(self, names: TenantNames, rotation: str) -> CredentialPlan | None:
        """The credentials to keep or create, from the Secret; None when it cannot be read —
        then no step may create or change a credential (the workers would lose access until
        the Secret could be written again)."""
        try:
            secret = self.b.kube.get("v1", "Secret", names.secret, names.namespace)
            api_secret = self.b.kube.get("v1", "Secret", names.api_secret, names.namespace)
            deployment = self.b.kube.get("apps/v1", "Deployment", names.workers, names.namespace)
        except BackendError:
            return None
        stored = None
        if secret is not None:
            raw = secret.to_dict()
            stored = StoredSecret(
                data=_decoded(raw.get("data") or {}),
                annotations=dict((raw.get("metadata") or {}).get("annotations") or {}),
                api_data=_decoded(api_secret.to_dict().get("data") or {}) if api_secret else None,
            )
        return plan(
            stored,
            names.identity,
            rotation,
            time.time(),
            self.rotation_grace,
            rollout_finished(deployment.to_dict() if deployment is not None else None),
        )

    def connection(self, run: TenantPass) -> TenantConnection:
        s, names, creds = self.settings, run.names, run.known()
        if creds.s3 is None:
            raise BackendUnavailable(Backend.OBJECT_STORE, "the tenant has no access key yet")
        return TenantConnection(
            tenant=names.tenant,
            db_host=s.db.host,
            db_port=s.db.port,
            db_user=names.db_user,
            db_password=creds.db_password,
            db_tls=s.db.tls,
            database=names.database,
            s3_endpoint=s.s3.endpoint,
            s3_region=s.s3.region,
            s3_access_key=creds.s3.access_key,
            s3_secret_key=creds.s3.secret_key,
            bucket=names.bucket,
            pulsar_service_url=s.pulsar.service_url,
            pulsar_namespace=names.pulsar_namespace,
            pulsar_token=run.pulsar_token,
            redis_url=self._tenant_redis_url(names.identity, creds.redis_password),
        )

    def _tenant_redis_url(self, user: str, password: str) -> str:
        configured = urlsplit(self.settings.redis.url.get_secret_value())
        where = self.settings.redis.tenant_url or (configured.hostname or "127.0.0.1")
        if not self.settings.redis.tenant_url and configured.port:
            where = f"{where}:{configured.port}"
        return f"{configured.scheme}://{user}:{password}@{where}/0"

    def _backend_ports(self) -> list[int]:
        s = self.settings
        urls = [
            s.s3.endpoint,
            s.pulsar.service_url,
            s.pulsar.admin_url,
            s.redis.url.get_secret_value(),
        ]
        return [s.db.port, *(urlsplit(url).port or 443 for url in urls)]

    def _namespace(self, run: TenantPass) -> Outcome:
        names, spec = run.names, run.spec
        manifests = [
            tenant_stack.namespace(names, spec),
            tenant_stack.service_account(names),
            tenant_stack.resource_quota(names, spec),
            tenant_stack.limit_range(names, spec),
            tenant_stack.network_policy(names, self._backend_ports()),
        ]
        return self._apply_all(manifests), ""

    def _apply_all(self, manifests: list[tenant_stack.Manifest]) -> list[str]:
        changed = []
        for manifest in manifests:
            applied = self.b.kube.apply(manifest)
            if applied.changed:
                changed.append(f"{applied.kind}/{applied.name}")
        return changed

    def _database(self, run: TenantPass) -> Outcome:
        names, creds = run.names, run.known()
        changed = []
        if self.b.db.ensure_schema(names.database):
            changed.append(f"schema/{names.database}")
        users = (
            (names.db_user, creds.db_password, WORKER_PRIVILEGES),
            (names.api_db_user, creds.api_db_password, API_PRIVILEGES),
        )
        for user, password, _ in users:
            if self.b.db.ensure_user(user, password, names.database):
                changed.append(f"user/{user}")
        note = ""
        if not self.b.db.supports_resource_groups():
            note = NO_RESOURCE_GROUPS
        elif self.b.db.ensure_resource_group(
            names.db_user, run.spec.plan.request_units_per_second, names.db_user
        ):
            changed.append(f"resource-group/{names.db_user}")
        self._migrate(names)
        # After the migrations: table-level grants need the tables.
        for user, _, privileges in users:
            if self.b.db.ensure_privileges(user, names.database, privileges):
                changed.append(f"grants/{user}")
        return changed, note

    def _migrate(self, names: TenantNames) -> None:
        """Migrations run as the operator, on the tenant's schema: the tenant's users have no
        DDL rights."""
        db = self.settings.db
        engine = engine_for(db, db.admin_user, db.admin_password.get_secret_value(), names.database)
        try:
            migrate(engine)
        except Exception as error:  # alembic/DBAPI errors; the message carries no secrets
            raise BackendRejected(Backend.DATABASE, f"migration failed: {error}") from error
        finally:
            engine.dispose()

    def _bucket(self, run: TenantPass) -> Outcome:
        names, creds = run.names, run.known()
        ensured = self.b.s3.ensure_bucket(names.bucket)
        changed = [f"bucket/{names.bucket}"] if ensured.changed else []
        if ensured.changed:
            self.b.quotas.forget(names.bucket)  # a re-created bucket has no quota yet
        if self.b.quotas.ensure(names.bucket, quantity_bytes(run.spec.plan.storage)):
            changed.append(f"bucket-quota/{names.bucket}")
        changed += self._identity(names, creds)
        notes = [] if self.b.quotas.enforced else [NO_BUCKET_QUOTA]
        if ensured.unsupported:
            notes.append(f"not supported by this store: {', '.join(ensured.unsupported)}")
        return changed, "; ".join(notes)

    def _identity(self, names: TenantNames, creds: CredentialPlan) -> list[str]:
        """The tenant's own object-store user, its one policy, and the Secret's key only."""
        ids, user = self.b.identities, names.identity
        changed = [f"s3-user/{user}"] if ids.ensure_user(user, names.bucket) else []
        keys = ids.access_keys(user)
        if creds.s3 is None or creds.s3.access_key not in keys:
            creds.s3 = ids.create_key(user)
            changed.append(f"s3-key/{user}")
        if not creds.additive:
            for foreign in set(keys) - {creds.s3.access_key}:
                ids.delete_key(user, foreign)
                changed.append(f"s3-key-removed/{user}")
        return changed

    def _messaging(self, run: TenantPass) -> Outcome:
        names, spec = run.names, run.spec
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
        note = ""
        creds = run.known()
        if self.b.tokens is None:
            note = NO_PULSAR_AUTH
        else:
            changed += self._pulsar_roles(names, creds)
            run.pulsar_token = self.b.tokens.issue(names.pulsar_role(creds.generation))
        acl = TenantAcl.of(names.tenant)
        if self.b.redis.ensure_user(names.identity, acl, creds.redis_password, creds.additive):
            changed.append(f"redis-user/{names.identity}")
        return changed, note

    def _pulsar_roles(self, names: TenantNames, creds: CredentialPlan) -> list[str]:
        """The current role and the API may use the namespace; earlier roles only while a
        rotation rolls out; nobody else."""
        pulsar, namespace = self.b.pulsar, names.pulsar_namespace
        role, api = names.pulsar_role(creds.generation), self.settings.pulsar.api_role
        changed = []
        for grantee, actions in ((role, TENANT_ACTIONS), (api, API_ACTIONS)):
            if pulsar.grant(namespace, grantee, actions):
                changed.append(f"pulsar-role/{grantee}")
        for other in set(pulsar.permissions(namespace)) - {role, api}:
            if creds.additive and names.is_pulsar_role(other):
                continue
            pulsar.revoke(namespace, other)
            changed.append(f"pulsar-role-revoked/{other}")
        return changed

    def _workers(self, run: TenantPass) -> Outcome:
        names, spec = run.names, run.spec
        connection = self.connection(run)
        secret = tenant_stack.connection_secret(names, connection, run.known().annotations())
        api_secret = tenant_stack.api_secret(names, run.known().api_db_password)
        current = self.b.kube.get("apps/v1", "Deployment", names.workers, names.namespace)
        # The autoscaler owns the replica count; apply keeps it, clamped to the spec's bounds.
        replicas = spec.workers.min_replicas if current is None else current.spec.replicas
        replicas = max(spec.workers.min_replicas, min(spec.workers.max_replicas, replicas))
        image = spec.worker_image or self.settings.default_worker_image
        digest = tenant_stack.credentials_digest(connection)
        deployment = tenant_stack.worker_deployment(names, spec, replicas, image, digest)
        changed = self._apply_all([secret, api_secret, deployment])
        health = self.workers_health(names)
        if not health.ready:
            raise WorkloadNotReady(health.reason, health.message)
        if run.known().additive:
            rotating = "credentials rotating: the old ones are removed once the workers rolled over"
            return changed, f"{health.message}; {rotating}"
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
        pulsar = self.b.pulsar
        data_steps: list[tuple[str, Callable[[], bool]]] = [
            (
                f"pulsar-tenant/{names.pulsar_tenant}",
                lambda: pulsar.delete_tenant(names.pulsar_tenant),
            ),
            (f"s3-user/{names.identity}", lambda: self.b.identities.delete_user(names.identity)),
            (f"redis-user/{names.identity}", lambda: self.b.redis.delete_user(names.identity)),
            (f"bucket/{names.bucket}", lambda: self._delete_bucket(names.bucket)),
            (f"user/{names.db_user}", lambda: self.b.db.drop_user(names.db_user)),
            (f"user/{names.api_db_user}", lambda: self.b.db.drop_user(names.api_db_user)),
            (
                f"resource-group/{names.db_user}",
                lambda: self.b.db.drop_resource_group(names.db_user),
            ),
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

    def _delete_bucket(self, bucket: str) -> bool:
        if not self.b.s3.bucket_exists(bucket):
            return False
        self.b.quotas.remove(bucket)
        return self.b.s3.delete_bucket(bucket)

    @staticmethod
    def _attempt(label: str, remove: Callable[[], bool], report: TeardownReport) -> None:
        try:
            remove()
        except BackendError as error:
            report.errors.append(error)
        else:
            report.removed.append(label)


def rollout_finished(deployment: dict[str, Any] | None) -> bool:
    """Every replica of the Deployment runs its current template (or none runs at all)."""
    if deployment is None:
        return True
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = int(spec.get("replicas") or 0)
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < generation:
        return False
    if wanted == 0:
        return int(status.get("replicas") or 0) == 0
    return (
        int(status.get("updatedReplicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) == wanted
        and int(status.get("replicas") or 0) == wanted
    )


def _decoded(data: dict[str, str]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in data.items()}
