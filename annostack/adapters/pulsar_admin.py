"""Pulsar administration over the admin REST API v2 (tenants, namespaces, policies, topics).

Every `ensure_*` is idempotent and returns whether it changed something, so the operator can
report drift it repaired. 409 Conflict on create means "already exists" and is success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.settings import PulsarSettings

TIMEOUT = httpx.Timeout(10.0)


@dataclass(frozen=True)
class NamespacePolicies:
    backlog_quota_bytes: int
    message_ttl_seconds: int
    # Retention must exceed the backlog quota or Pulsar refuses it (412); acknowledged
    # messages are kept as long as the quota allows, so a reprocessing run can replay them.
    retention_minutes: int = 24 * 60

    @property
    def retention_mb(self) -> int:
        return self.backlog_quota_bytes // 2**20 + 1


class PulsarAdmin:
    def __init__(self, settings: PulsarSettings, client: httpx.Client | None = None) -> None:
        self.cluster = settings.cluster
        token = settings.token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.http = client or httpx.Client(
            base_url=f"{settings.admin_url.rstrip('/')}/admin/v2", timeout=TIMEOUT, headers=headers
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, json: Any = None, **params: str) -> httpx.Response:
        try:
            response = self.http.request(method, path, json=json, params=params or None)
        except httpx.HTTPError as error:
            raise BackendUnavailable(Backend.PULSAR, f"{method} {path}: {error}") from error
        if response.status_code >= 500:
            raise BackendUnavailable(
                Backend.PULSAR, f"{method} {path}: {response.status_code} {response.text[:200]}"
            )
        return response

    def _expect(self, response: httpx.Response, *ok: int) -> httpx.Response:
        if response.status_code not in ok:
            request = response.request
            raise BackendRejected(
                Backend.PULSAR,
                f"{request.method} {request.url.path}: {response.status_code} "
                f"{response.text[:200]}",
            )
        return response

    def _create(self, path: str, json: Any = None) -> bool:
        """PUT that creates; True if created, False if it already existed."""
        response = self._expect(self._call("PUT", path, json), 204, 409)
        return response.status_code == 204

    def ensure_tenant(self, tenant: str) -> bool:
        info = {"allowedClusters": [self.cluster], "adminRoles": []}
        current = self._call("GET", f"/tenants/{tenant}")
        if current.status_code == 200:
            if self.cluster in current.json().get("allowedClusters", []):
                return False
            self._expect(self._call("POST", f"/tenants/{tenant}", info), 204)
            return True
        return self._create(f"/tenants/{tenant}", info)

    def ensure_namespace(self, namespace: str) -> bool:
        return self._create(f"/namespaces/{namespace}")

    def ensure_policies(self, namespace: str, policies: NamespacePolicies) -> bool:
        """Backlog quota, TTL and retention; only what differs is written."""
        base = f"/namespaces/{namespace}"
        changed = False
        quota = {"limitSize": policies.backlog_quota_bytes, "policy": "producer_exception"}
        current_quota = _json(self._call("GET", f"{base}/backlogQuotaMap")) or {}
        current_limit = current_quota.get("destination_storage", {}).get("limitSize")
        if current_limit != quota["limitSize"]:
            # Pulsar insists that retention exceeds the backlog quota at every moment: raise
            # retention before growing the quota, shrink the quota before lowering retention.
            growing = current_limit is None or current_limit < quota["limitSize"]
            if growing:
                self._set_retention(base, policies)
            self._expect(self._call("POST", f"{base}/backlogQuota", quota), 204)
            changed = True
        retention = _json(self._call("GET", f"{base}/retention")) or {}
        if retention.get("retentionSizeInMB") != policies.retention_mb:
            self._set_retention(base, policies)
            changed = True
        if _json(self._call("GET", f"{base}/messageTTL")) != policies.message_ttl_seconds:
            self._expect(
                self._call("POST", f"{base}/messageTTL", policies.message_ttl_seconds), 204
            )
            changed = True
        return changed

    def _set_retention(self, base: str, policies: NamespacePolicies) -> None:
        body = {
            "retentionTimeInMinutes": policies.retention_minutes,
            "retentionSizeInMB": policies.retention_mb,
        }
        self._expect(self._call("POST", f"{base}/retention", body), 204)

    def ensure_topic(self, namespace: str, topic: str) -> bool:
        return self._create(f"/persistent/{namespace}/{topic}")

    def ensure_subscription(self, namespace: str, topic: str, subscription: str) -> bool:
        path = f"/persistent/{namespace}/{topic}/subscription/{subscription}"
        return self._create(path)

    def permissions(self, namespace: str) -> dict[str, set[str]]:
        """Roles granted on the namespace and their actions (produce, consume, ...)."""
        response = self._expect(self._call("GET", f"/namespaces/{namespace}/permissions"), 200)
        return {role: set(actions) for role, actions in (response.json() or {}).items()}

    def grant(self, namespace: str, role: str, actions: set[str]) -> bool:
        """`role` may do exactly `actions` on the namespace; True if that had to change."""
        if self.permissions(namespace).get(role) == actions:
            return False
        path = f"/namespaces/{namespace}/permissions/{role}"
        self._expect(self._call("POST", path, sorted(actions)), 204)
        return True

    def revoke(self, namespace: str, role: str) -> None:
        path = f"/namespaces/{namespace}/permissions/{role}"
        self._expect(self._call("DELETE", path), 204, 404)

    def subscriptions(self, namespace: str, topic: str) -> list[str]:
        response = self._call("GET", f"/persistent/{namespace}/{topic}/subscriptions")
        if response.status_code == 404:
            return []
        return list(self._expect(response, 200).json())

    def backlog(self, namespace: str, topic: str, subscription: str) -> int:
        """Messages waiting in a subscription (what the autoscaler follows).

        Pulsar counts entries: a batching producer's 1,000-message batch is one. annostack's
        own producers (API, workers) send unbatched, so for them entries are messages.
        """
        stats = self._expect(self._call("GET", f"/persistent/{namespace}/{topic}/stats"), 200)
        subscription_stats = stats.json().get("subscriptions", {}).get(subscription, {})
        return int(subscription_stats.get("msgBacklog", 0))

    def namespaces(self, tenant: str) -> list[str]:
        response = self._call("GET", f"/namespaces/{tenant}")
        if response.status_code in (403, 404):
            return []
        return list(self._expect(response, 200).json())

    def tenant_exists(self, tenant: str) -> bool:
        return self._call("GET", f"/tenants/{tenant}").status_code == 200

    def delete_tenant(self, tenant: str) -> bool:
        """Delete the tenant with all its namespaces and topics; False if it was gone."""
        response = self._call("DELETE", f"/tenants/{tenant}", force="true")
        return self._expect(response, 204, 404).status_code == 204


def _json(response: httpx.Response) -> Any:
    """The JSON body, or None when Pulsar answers an unset policy with an empty body."""
    if response.status_code == 204 or not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError as error:
        raise BackendRejected(
            Backend.PULSAR, f"{response.request.url.path}: not JSON: {response.text[:100]}"
        ) from error
