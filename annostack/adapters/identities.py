"""Per-tenant object-store identities over the AWS IAM API (SeaweedFS, AWS; MinIO via a seam).

Each tenant gets an IAM user whose one inline policy allows object reads and writes and
listing in its own bucket and nothing else, and access keys of that user only. The same
requests work against AWS IAM and against SeaweedFS, which serves the IAM query API on its S3
port (`weed s3/mini -s3.iam.readOnly=false`, verified on 4.48). SeaweedFS lets a user create
access keys for itself; the operator therefore treats every key that is not in the tenant's
Secret as foreign and deletes it (`retire_keys_except`), so a worker that mints itself a key
keeps it only until the next drift pass.

MinIO has no IAM API; its admin API (`mc admin user add`, `mc admin policy attach`) would be
another `TenantIdentities` implementation.

Requests are signed here (SigV4, header form, service `iam`) rather than with boto3: the whole
API surface is six form-encoded POSTs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import unquote, urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.settings import ObjectStoreSettings

IAM_VERSION = "2010-05-08"
POLICY_NAME = "annostack-own-bucket"
TIMEOUT = httpx.Timeout(10.0)
# What a tenant's workers do with their bucket: read and write objects, list them, and clean
# up a multipart upload. No bucket configuration (policy, CORS, versioning, lifecycle): the
# operator owns those with the platform identity.
TENANT_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)
TENANT_BUCKET_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation")


@dataclass(frozen=True)
class AccessKey:
    access_key: str
    secret_key: str


def bucket_policy(bucket: str) -> str:
    """The inline policy of a tenant's user: its own bucket only (AWS policy grammar)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": list(TENANT_BUCKET_ACTIONS),
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                },
                {
                    "Effect": "Allow",
                    "Action": list(TENANT_OBJECT_ACTIONS),
                    "Resource": [f"arn:aws:s3:::{bucket}/*"],
                },
            ],
        },
        separators=(",", ":"),
    )


class TenantIdentities(Protocol):
    """What the provisioner needs from a store's identity management."""

    def ensure_user(self, user: str, bucket: str) -> bool:
        """The user exists with exactly the own-bucket policy; True if anything changed."""

    def access_keys(self, user: str) -> list[str]:
        """Ids of the user's access keys."""

    def create_key(self, user: str) -> AccessKey:
        """A new access key; the secret is only ever returned here."""

    def delete_key(self, user: str, access_key: str) -> None: ...

    def delete_user(self, user: str) -> bool:
        """Remove keys, policy and user; False if there was no such user."""

    def close(self) -> None: ...


def sign_v4(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    credentials: tuple[str, str],
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus SigV4 `Authorization`, `x-amz-date` and `x-amz-content-sha256`."""
    access_key, secret_key = credentials
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date, day = moment.strftime("%Y%m%dT%H%M%SZ"), moment.strftime("%Y%m%d")
    parts = urlsplit(url)
    payload = hashlib.sha256(body).hexdigest()
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed |= {"host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
    names = ";".join(sorted(signed))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            parts.query,
            "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
            names,
            payload,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return {**signed, "authorization": authorization}


class IamError(Exception):
    """An IAM error document (its code, e.g. NoSuchEntity, and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class IamIdentities:
    """`TenantIdentities` over the IAM query API, with the platform's admin credentials."""

    def __init__(self, settings: ObjectStoreSettings, client: httpx.Client | None = None) -> None:
        endpoint = settings.iam_endpoint or settings.endpoint
        self.url = endpoint.rstrip("/") + "/"
        # AWS IAM is global and signs in us-east-1; SeaweedFS takes the S3 region.
        self.region = "us-east-1" if settings.iam_endpoint else settings.region
        self.credentials = (
            settings.access_key.get_secret_value(),
            settings.secret_key.get_secret_value(),
        )
        self.http = client or httpx.Client(timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def _call(self, action: str, **params: str) -> ElementTree.Element:
        body = urlencode({"Action": action, "Version": IAM_VERSION, **params}).encode()
        headers = sign_v4(
            "POST",
            self.url,
            body,
            {"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
            self.credentials,
            self.region,
            "iam",
        )
        try:
            response = self.http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"IAM {action}: {error}") from error
        # The document comes from our own configured endpoint, not from a user.
        root = ElementTree.fromstring(response.content or b"<empty/>")  # noqa: S314
        if response.status_code >= 500:
            raise BackendUnavailable(Backend.OBJECT_STORE, f"IAM {action}: {response.status_code}")
        if response.status_code != 200:
            raise IamError(response.status_code, _text(root, "Code"), _text(root, "Message"))
        return root

    def _rejected(self, action: str, error: IamError) -> BackendRejected:
        return BackendRejected(Backend.OBJECT_STORE, f"IAM {action}: {error}")

    def user_exists(self, user: str) -> bool:
        try:
            self._call("GetUser", UserName=user)
        except IamError as error:
            if error.code == "NoSuchEntity" or error.status == 404:
                return False
            raise self._rejected("GetUser", error) from error
        return True

    def ensure_user(self, user: str, bucket: str) -> bool:
        changed = False
        wanted = _canonical(json.loads(bucket_policy(bucket)))
        try:
            if not self.user_exists(user):
                self._call("CreateUser", UserName=user)
                changed = True
            if self._policy(user) != wanted:
                self._call(
                    "PutUserPolicy",
                    UserName=user,
                    PolicyName=POLICY_NAME,
                    PolicyDocument=bucket_policy(bucket),
                )
                changed = True
        except IamError as error:
            raise self._rejected("ensure user", error) from error
        return changed

    def _policy(self, user: str) -> object:
        try:
            root = self._call("GetUserPolicy", UserName=user, PolicyName=POLICY_NAME)
        except IamError as error:
            if error.code == "NoSuchEntity" or error.status == 404:
                return None
            raise
        document = _text(root, "PolicyDocument")
        # AWS returns the document URL-encoded; SeaweedFS returns it as stored.
        if document.startswith("%7B"):
            document = unquote(document)
        try:
            return _canonical(json.loads(document))
        except (ValueError, TypeError, AttributeError):
            return None

    def access_keys(self, user: str) -> list[str]:
        try:
            root = self._call("ListAccessKeys", UserName=user)
        except IamError as error:
            raise self._rejected("ListAccessKeys", error) from error
        return [e.text or "" for e in root.iter() if _local(e.tag) == "AccessKeyId"]

    def create_key(self, user: str) -> AccessKey:
        try:
            root = self._call("CreateAccessKey", UserName=user)
        except IamError as error:
            raise self._rejected("CreateAccessKey", error) from error
        return AccessKey(_text(root, "AccessKeyId"), _text(root, "SecretAccessKey"))

    def delete_key(self, user: str, access_key: str) -> None:
        try:
            self._call("DeleteAccessKey", UserName=user, AccessKeyId=access_key)
        except IamError as error:
            if error.code != "NoSuchEntity":
                raise self._rejected("DeleteAccessKey", error) from error

    def delete_user(self, user: str) -> bool:
        if not self.user_exists(user):
            return False
        for key in self.access_keys(user):
            self.delete_key(user, key)
        try:
            self._call("DeleteUserPolicy", UserName=user, PolicyName=POLICY_NAME)
        except IamError as error:
            if error.code != "NoSuchEntity":
                raise self._rejected("DeleteUserPolicy", error) from error
        try:
            self._call("DeleteUser", UserName=user)
        except IamError as error:
            raise self._rejected("DeleteUser", error) from error
        return True


def _canonical(policy: dict[str, object]) -> object:
    """A policy in one spelling: stores echo a one-element list back as a plain string."""

    def listed(value: object) -> list[str]:
        return sorted([value] if isinstance(value, str) else list(value))  # type: ignore[call-overload]

    statements = policy.get("Statement", [])
    assert isinstance(statements, list)
    return sorted(
        (s["Effect"], tuple(listed(s["Action"])), tuple(listed(s["Resource"]))) for s in statements
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(root: ElementTree.Element, tag: str) -> str:
    for element in root.iter():
        if _local(element.tag) == tag:
            return element.text or ""
    return ""
