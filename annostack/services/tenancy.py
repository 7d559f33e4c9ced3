"""Which tenant a request belongs to, and that tenant's own connections.

Every request is scoped to exactly one tenant, and its SQL runs as **that tenant's database
user** (read from the Secret the operator wrote): a wrong query can at worst see its own
tenant's schema. Tokens carry the tenant's name so it can be resolved without a shared table:

* API tokens ``ast_<tenant>_<secret>``: long-lived, created by an admin, stored as SHA-256 of
  the secret in the tenant's own ``api_tokens`` table (the secret is random, so a fast hash
  is the right one, as for GitHub's or Stripe's tokens).
* Session tokens ``ass_<signed payload>``: short-lived, for browsers, signed with the
  platform's session key; carry tenant and user, checked without a database round trip.
  They may also list the user's teams (there is no team model yet: whoever issues the session
  — the login flow — states them, and push uses them to authorise team destinations).

A token names its tenant, so a made-up one would cost a Kubernetes API read per request: a
name that is not a tenant name is refused without one, and a tenant found missing is
remembered as missing for NEGATIVE_TTL_SECONDS by the API's directory (a tenant created
meanwhile is usable that much later; the operator, which reads only tenants that exist or are
being provisioned, does not wait). Failed authentications are also rate-limited per client
address (apps.logins).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from prometheus_client import Counter
from sqlalchemy.engine import Engine

from annostack.adapters.database import engine_for
from annostack.adapters.kube import Kube
from annostack.adapters.tenant_tables import api_tokens
from annostack.domain.errors import AnnostackError
from annostack.domain.tenant_stack import TenantConnection
from annostack.domain.tenants import (
    API_GROUP,
    API_VERSION,
    MAX_NAME_LENGTH,
    NAME_PATTERN,
    Plan,
    TenantNames,
    TenantSpec,
)
from annostack.settings import DatabaseSettings, ObjectStoreSettings

API_TOKEN_PREFIX = "ast_"  # noqa: S105 (a prefix, not a secret)
SESSION_TOKEN_PREFIX = "ass_"  # noqa: S105
DIRECTORY_TTL_SECONDS = 60.0
NEGATIVE_TTL_SECONDS = 10.0
MAX_REMEMBERED_MISSING = 10_000  # made-up names are many; forget the oldest past this
TENANT_NAME = re.compile(NAME_PATTERN)
TENANT_LOOKUPS = Counter(
    "annostack_tenant_lookups_total",
    "Tenant Secret reads from the Kubernetes API by the tenant directory, by result.",
    ["result"],
)


class Unauthenticated(AnnostackError):
    """No valid credentials; the message is safe to show (it never says which part failed)."""


class UnknownTenant(AnnostackError):
    """The tenant does not exist (or is not provisioned yet)."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    subject: str  # token name or user id
    kind: str  # "api-token" | "session"
    teams: frozenset[str] = frozenset()  # from the session token; empty for API tokens
    expires_at: float | None = None  # Unix time a session token stops being valid


@dataclass
class TenantContext:
    """One tenant's resources as the API uses them."""

    names: TenantNames
    connection: TenantConnection
    engine: Engine
    loaded_at: float
    plan: Plan = field(default_factory=Plan)  # the limits the API and the operator enforce


def object_store_of(connection: TenantConnection) -> ObjectStoreSettings:
    """The tenant's own S3 credentials, as the object-store adapters take them."""
    return ObjectStoreSettings(
        endpoint=connection.s3_endpoint,
        region=connection.s3_region,
        access_key=connection.s3_access_key,
        secret_key=connection.s3_secret_key,
    )


class TenantDirectory:
    """Tenant name -> its connection details and a pool as its own DB user (cached)."""

    def __init__(self, kube: Kube, db: DatabaseSettings, remember_missing: float = 0.0) -> None:
        self.kube = kube
        self.db = db
        self.remember_missing = remember_missing  # seconds a missing tenant is not looked up
        self._cache: dict[str, TenantContext] = {}
        self._missing: dict[str, float] = {}  # tenant -> when it was found missing (monotonic)
        self._lock = threading.Lock()

    def get(self, tenant: str) -> TenantContext:
        if len(tenant) > MAX_NAME_LENGTH or not TENANT_NAME.fullmatch(tenant):
            raise UnknownTenant(tenant)
        with self._lock:
            cached = self._cache.get(tenant)
            if cached and time.monotonic() - cached.loaded_at < DIRECTORY_TTL_SECONDS:
                return cached
            missing_since = self._missing.get(tenant)
            if missing_since and time.monotonic() - missing_since < self.remember_missing:
                raise UnknownTenant(tenant)
        try:
            context = self._load(tenant, cached)
        except UnknownTenant:
            self._remember_missing(tenant)
            raise
        with self._lock:
            self._cache[tenant] = context
            self._missing.pop(tenant, None)
        return context

    def _remember_missing(self, tenant: str) -> None:
        with self._lock:
            self._missing.pop(tenant, None)  # re-inserted last: the dict stays oldest-first
            self._missing[tenant] = time.monotonic()
            while len(self._missing) > MAX_REMEMBERED_MISSING:
                del self._missing[next(iter(self._missing))]

    def _load(self, tenant: str, previous: TenantContext | None) -> TenantContext:
        names = TenantNames(tenant=tenant)
        data = self.kube.secret_data(names.namespace, names.secret)
        TENANT_LOOKUPS.labels("found" if data else "missing").inc()
        if not data:
            raise UnknownTenant(tenant)
        api = self.kube.secret_data(names.namespace, names.api_secret)
        if not api:
            raise UnknownTenant(tenant)  # provisioned by an operator without the API's user
        # The API works in the tenant's schema as its own user (it alone may touch
        # api_tokens); the workers' credentials stay theirs.
        connection = TenantConnection.from_env({**data, **api})
        if (connection.tenant, connection.bucket) != (tenant, names.bucket):
            # The platform identity signs for whatever bucket the context names: it must be
            # the caller's own, whatever the Secret says.
            raise UnknownTenant(tenant)
        plan = self._plan(tenant)
        if previous is not None and previous.connection == connection:
            return TenantContext(names, connection, previous.engine, time.monotonic(), plan)
        if previous is not None:
            previous.engine.dispose()
        tenant_db = self.db.model_copy(update={"tls": connection.db_tls})
        engine = engine_for(
            tenant_db,
            connection.db_user,
            connection.db_password.get_secret_value(),
            connection.database,
        )
        return TenantContext(names, connection, engine, time.monotonic(), plan)

    def _plan(self, tenant: str) -> Plan:
        """The Tenant's plan; the defaults for a tenant provisioned without a Tenant object
        (as some tests do)."""
        api_version = f"{API_GROUP}/{API_VERSION}"
        if not self.kube.has_api(api_version, "Tenant"):
            return Plan()  # no CRDs: tenants provisioned directly (tests, the bench)
        found = self.kube.get(api_version, "Tenant", tenant)
        if found is None:
            return Plan()
        return TenantSpec.model_validate(found.to_dict().get("spec") or {}).plan

    def close(self) -> None:
        for context in self._cache.values():
            context.engine.dispose()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_token(context: TenantContext, name: str) -> str:
    """A new API token for the tenant; the plain token is returned once and never stored."""
    secret = secrets.token_urlsafe(32)
    with context.engine.begin() as conn:
        conn.execute(api_tokens.insert().values(name=name, token_hash=_hash(secret)))
    return f"{API_TOKEN_PREFIX}{context.names.tenant}_{secret}"


def split_api_token(token: str) -> tuple[str, str]:
    """(tenant, secret) of an API token, or Unauthenticated."""
    body = token.removeprefix(API_TOKEN_PREFIX)
    tenant, _, secret = body.partition("_")
    if body == token or not secret or not tenant or len(tenant) > MAX_NAME_LENGTH:
        raise Unauthenticated("invalid token")
    return tenant, secret


def verify_api_token(context: TenantContext, secret: str) -> str:
    """The token's name if the secret is a live token of this tenant."""
    digest = _hash(secret)
    with context.engine.connect() as conn:
        row = conn.execute(
            sa.select(api_tokens.c.name, api_tokens.c.token_hash).where(
                api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
    # The lookup is by hash already; compare again in constant time for good measure.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthenticated("invalid token")
    return str(row.name)


class SessionTokens:
    """Short-lived signed tokens for browser sessions."""

    def __init__(self, key: str, max_age_seconds: int) -> None:
        self.serializer = URLSafeTimedSerializer(key, salt="annostack-session")
        self.max_age = max_age_seconds

    def issue(self, tenant: str, user: str, teams: Iterable[str] = ()) -> str:
        payload: dict[str, object] = {"t": tenant, "u": user}
        if teams:  # absent rather than empty, so tokens without teams stay as they were
            payload["g"] = sorted(teams)
        return SESSION_TOKEN_PREFIX + self.serializer.dumps(payload)

    def verify(self, token: str) -> Principal:
        try:
            body = token.removeprefix(SESSION_TOKEN_PREFIX)
            payload, signed_at = self.serializer.loads(
                body, max_age=self.max_age, return_timestamp=True
            )
        except SignatureExpired as error:
            raise Unauthenticated("session expired") from error
        except BadSignature as error:
            raise Unauthenticated("invalid token") from error
        teams = frozenset(str(team) for team in payload.get("g", ()))
        expires_at = signed_at.timestamp() + self.max_age
        return Principal(payload["t"], payload["u"], "session", teams, expires_at)
