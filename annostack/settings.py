"""Typed settings for every annostack process (operator, API, workers).

One environment prefix, ``ANNOSTACK_``, with ``__`` between a section and its field
(``ANNOSTACK_DB__HOST``, ``ANNOSTACK_S3__ENDPOINT``). ``annostack dev env`` prints exactly
these variables for the local stack, so the code never knows whether it talks to the local
stack or to a production TiDB/Pulsar/S3.

Secrets are ``SecretStr``: they print as ``**********`` in logs, reprs and tracebacks, and are
unwrapped only where a client is built. Outside ``environment=dev`` every process refuses to
start with a secret left at its default (empty, or a ``dev-only-`` placeholder such as the dev
overlay's), naming the variable to set — one check, `refuse_default_secrets`, used by every
settings class, as full-stack-fastapi-template's `_check_default_secret` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "prod"]
# The dev overlay's generated Secrets and the API's session key default use this prefix: a
# value that starts with it is a placeholder, wherever it was copied to.
DEV_ONLY_PREFIX = "dev-only-"


def refuse_default_secrets(
    environment: Environment, secrets: Mapping[str, SecretStr], minimum_lengths: Mapping[str, int]
) -> None:
    """Outside dev, raise ValueError naming each variable whose secret is still a default.

    `secrets` maps the environment variable to its value; `minimum_lengths` gives a lower
    bound for those that must be long random values (a signing key).
    """
    if environment == "dev":
        return
    unsafe = []
    for variable, secret in secrets.items():
        value = secret.get_secret_value()
        if not value or value.startswith(DEV_ONLY_PREFIX):
            unsafe.append(variable)
        elif len(value) < minimum_lengths.get(variable, 0):
            unsafe.append(f"{variable} (at least {minimum_lengths[variable]} characters)")
    if unsafe:
        raise ValueError(
            f"environment={environment} refuses default or placeholder secrets; "
            f"set {', '.join(unsafe)}"
        )


class KubernetesSettings(BaseModel):
    """Where the Kubernetes API is."""

    kubeconfig: Path | None = Field(
        default=None,
        description="Path to a kubeconfig; unset means in-cluster config (service account).",
    )


class DatabaseSettings(BaseModel):
    """The MySQL-protocol server (TiDB in production) and the operator's admin account."""

    host: str = Field(default="127.0.0.1", description="TiDB/MySQL host.")
    port: int = Field(default=4000, description="TiDB/MySQL port (TiDB's default is 4000).")
    admin_user: str = Field(
        default="root", description="Account that creates tenant schemas and users."
    )
    admin_password: SecretStr = Field(default=SecretStr(""), description="Its password.")
    tls: Literal["required", "disabled"] = Field(
        default="required",
        description=(
            "TLS to the server, verified against the system CAs. `disabled` only for servers "
            "without TLS, such as the local stack."
        ),
    )


class ObjectStoreSettings(BaseModel):
    """The S3-compatible object store (MinIO, SeaweedFS, AWS S3)."""

    endpoint: str = Field(default="http://127.0.0.1:9000", description="S3 endpoint URL.")
    public_endpoint: str | None = Field(
        default=None,
        description=(
            "Endpoint browsers reach, used in pre-signed URLs when it differs from `endpoint` "
            "(e.g. an ingress host in front of an in-cluster MinIO)."
        ),
    )
    region: str = Field(default="us-east-1", description="Region used to sign requests.")
    access_key: SecretStr = Field(default=SecretStr(""), description="Admin access key.")
    secret_key: SecretStr = Field(default=SecretStr(""), description="Admin secret key.")
    iam_endpoint: str | None = Field(
        default=None,
        description=(
            "AWS IAM API (CreateUser, CreateAccessKey, PutUserPolicy) that gives each tenant its "
            "own identity; unset means the S3 endpoint itself (SeaweedFS serves IAM there, "
            "with `-s3.iam.readOnly=false`). On AWS: https://iam.amazonaws.com."
        ),
    )
    quota: Literal["seaweedfs", "none"] = Field(
        default="none",
        description=(
            "How bucket quotas (plan.storage) are set: `seaweedfs` runs `weed shell "
            "s3.bucket.quota` against `seaweedfs_master`; `none` for stores without quotas "
            "(the tenant's BucketReady condition then says the quota is not enforced)."
        ),
    )
    seaweedfs_master: str | None = Field(
        default=None, description="SeaweedFS master host:port, for `quota: seaweedfs`."
    )
    seaweedfs_filer: str | None = Field(
        default=None, description="SeaweedFS filer host:port, for `quota: seaweedfs`."
    )
    weed_binary: str = Field(default="weed", description="The `weed` command, for quotas.")


class PulsarSettings(BaseModel):
    """The Pulsar cluster: binary protocol for messages, REST for administration."""

    service_url: str = Field(default="pulsar://127.0.0.1:6650", description="Broker URL.")
    admin_url: str = Field(default="http://127.0.0.1:8080", description="Admin REST URL.")
    cluster: str = Field(default="standalone", description="Cluster tenants are allowed on.")
    token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "This process's JWT for the broker and the admin API (AuthenticationProviderToken); "
            "the operator's must belong to a superuser role. Empty: no authentication."
        ),
    )
    token_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Operator only: the broker's HS256 `tokenSecretKey` (base64), to issue each "
            "tenant's token. Empty: tenants get no token (a broker without authentication)."
        ),
    )
    api_role: str = Field(
        default="annostack-api",
        description="The API's role; the operator grants it `produce` on every tenant namespace.",
    )


class RedisSettings(BaseModel):
    """Redis: rate limits, edit locks, worker progress and the push relay."""

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description=(
            "redis:// URL with this process's own ACL user (redis://user:password@host:port/0); "
            "secret because it carries the password. The operator's user also manages the "
            "tenants' ACL users (ACL SETUSER/DELUSER)."
        ),
    )
    tenant_url: str | None = Field(
        default=None,
        description=(
            "Operator only: host:port part tenants' workers use (redis://<user>:<pw>@HERE/0); "
            "unset means the host and port of `url`."
        ),
    )


class Settings(BaseSettings):
    """Settings shared by all annostack processes."""

    model_config = SettingsConfigDict(
        env_prefix="ANNOSTACK_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # the input holds the secrets themselves
    )

    environment: Environment = Field(
        default="dev",
        description="Default secrets (empty, `dev-only-…`) are refused outside dev.",
    )
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)
    pulsar: PulsarSettings = Field(default_factory=PulsarSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    default_worker_image: str = Field(
        default="registry.gitlab.com/annostack/annostack/worker:latest",
        min_length=1,
        description="Worker image of Tenants that name none (the operator's own release).",
    )

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Self:
        secrets = {
            "ANNOSTACK_DB__ADMIN_PASSWORD": self.db.admin_password,
            "ANNOSTACK_S3__ACCESS_KEY": self.s3.access_key,
            "ANNOSTACK_S3__SECRET_KEY": self.s3.secret_key,
        }
        refuse_default_secrets(self.environment, secrets, {})
        return self
