"""A tenant's own credentials for each backend, and how they rotate without downtime (pure).

The tenant's Secret (`tenant-<name>/annostack-connection`) is the one place its credentials
live: the DB password, the access key of its own object-store identity, the password of its
Redis ACL user and the token of its Pulsar role. Each pass of the operator starts from what
the Secret holds (`plan`) and keeps it, repairing only what is missing.

Rotation, on demand: set the annotation ``credentials.annostack.io/rotate`` on the Tenant to
any new value (``kubectl annotate tenant acme credentials.annostack.io/rotate=$(date +%s)
--overwrite``). Its own domain because kopf ignores changes to annotations under its storage
prefix (``annostack.io/``), and the change must start the rotation at once. The operator then

1. creates the new credentials next to the old ones: a second access key, a second Redis
   password, a new Pulsar role (``tenant-<name>.g<generation>``) granted on the namespace;
2. writes them into the Secret; the worker Deployment's pod template carries a hash of the
   Secret, so Kubernetes rolls the workers over to the new values, old pods finishing their
   message within the grace period;
3. removes the old ones once the rollout has finished (every replica updated and available,
   or none running) and at least `grace` seconds have passed: every access key but the
   Secret's is deleted, the Redis user keeps one password, and every role but the current one
   loses its namespace permission (a Pulsar token cannot be revoked; its role's rights can).

Until step 3 the old credentials keep working ("additive" passes); afterwards every pass is
exact, which also removes keys a compromised worker may have minted for itself. The DB
password is not rotated: MariaDB and TiDB have no dual passwords, so it could not be done
without cutting the workers off (see docs/operations.md).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from annostack.adapters.identities import AccessKey
from annostack.domain.tenants import API_GROUP

ROTATE_ANNOTATION = f"credentials.{API_GROUP}/rotate"
GENERATION_ANNOTATION = f"{API_GROUP}/credentials-generation"
HANDLED_ANNOTATION = f"{API_GROUP}/rotation-handled"
RETIRE_AFTER_ANNOTATION = f"{API_GROUP}/retire-old-credentials-after"

DB_PASSWORD_KEY = "ANNOSTACK_TENANT__DB_PASSWORD"  # noqa: S105 (key names, not secrets)
S3_ACCESS_KEY = "ANNOSTACK_TENANT__S3_ACCESS_KEY"
S3_SECRET_KEY = "ANNOSTACK_TENANT__S3_SECRET_KEY"  # noqa: S105
REDIS_URL_KEY = "ANNOSTACK_TENANT__REDIS_URL"
PULSAR_TOKEN_KEY = "ANNOSTACK_TENANT__PULSAR_TOKEN"  # noqa: S105


@dataclass(frozen=True)
class StoredSecret:
    """What the tenant's Secret holds now."""

    data: dict[str, str]
    annotations: dict[str, str]
    api_data: dict[str, str] | None = None  # the API's Secret (its DB user), if written yet


@dataclass
class CredentialPlan:
    """The credentials this pass establishes, and whether old ones are still honoured."""

    db_password: str
    api_db_password: str
    s3: AccessKey | None  # None: the bucket step creates a key
    redis_password: str
    generation: int
    handled: str
    retire_after: float | None  # while set, earlier credentials keep working
    rotating: bool = False

    @property
    def additive(self) -> bool:
        """Keep credentials not in the Secret (a rotation is rolling out)."""
        return self.retire_after is not None

    def annotations(self) -> dict[str, str]:
        values = {GENERATION_ANNOTATION: str(self.generation), HANDLED_ANNOTATION: self.handled}
        if self.retire_after is not None:
            values[RETIRE_AFTER_ANNOTATION] = str(int(self.retire_after))
        return values


def _redis_password(url: str | None, user: str) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return parts.password if parts.username == user and parts.password else None


def plan(
    stored: StoredSecret | None,
    redis_user: str,
    requested: str,
    now: float,
    grace_seconds: float,
    rollout_finished: bool,
) -> CredentialPlan:
    """Keep what `stored` holds; start a rotation if `requested` is new; end one when due."""
    data = stored.data if stored else {}
    notes = stored.annotations if stored else {}
    s3 = None
    if data.get(S3_ACCESS_KEY) and data.get(S3_SECRET_KEY):
        s3 = AccessKey(data[S3_ACCESS_KEY], data[S3_SECRET_KEY])
    due = notes.get(RETIRE_AFTER_ANNOTATION)
    retire_after = float(due) if due else None
    current = CredentialPlan(
        db_password=data.get(DB_PASSWORD_KEY) or secrets.token_urlsafe(24),
        api_db_password=((stored.api_data or {}) if stored else {}).get(DB_PASSWORD_KEY)
        or secrets.token_urlsafe(24),
        s3=s3,
        redis_password=_redis_password(data.get(REDIS_URL_KEY), redis_user)
        or secrets.token_urlsafe(24),
        generation=int(notes.get(GENERATION_ANNOTATION, "1")),
        # A fresh tenant has nothing to rotate: it starts as if the request were handled.
        handled=notes.get(HANDLED_ANNOTATION, requested if stored is None else ""),
        retire_after=retire_after,
    )
    if requested and requested != current.handled:
        current.generation += 1
        current.s3 = None
        current.redis_password = secrets.token_urlsafe(24)
        current.handled = requested
        current.retire_after = now + grace_seconds
        current.rotating = True
    elif retire_after is not None and now >= retire_after and rollout_finished:
        current.retire_after = None
    return current
