"""Kubernetes access for the operator: server-side apply, reads, deletes, status patches.

Server-side apply with one field manager makes every `apply` an idempotent "ensure": fields
we own are reset to what we declare (an edited Deployment is repaired), fields others own are
left alone. The resourceVersion before and after tells whether anything actually changed, which
is how drift repairs are counted and reported.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    DynamicApiError,
    NotFoundError,
    ResourceNotFoundError,
)

from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable
from annostack.settings import KubernetesSettings

FIELD_MANAGER = "annostack-operator"
Manifest = dict[str, Any]


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    changed: bool


def api_client(settings: KubernetesSettings) -> client.ApiClient:
    if settings.kubeconfig is not None:
        return config.new_client_from_config(config_file=str(settings.kubeconfig))
    config.load_incluster_config()
    return client.ApiClient()


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (ApiException, DynamicApiError) as error:
        status = getattr(error, "status", None)
        reason = getattr(error, "reason", "") or type(error).__name__
        if status is None or status >= 500 or status == 429:
            raise BackendUnavailable(Backend.KUBERNETES, f"{what}: {status} {reason}") from error
        raise BackendRejected(Backend.KUBERNETES, f"{what}: {status} {_message(error)}") from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise BackendUnavailable(Backend.KUBERNETES, f"{what}: {type(error).__name__}") from error


def _message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, bytes | str):
        try:
            return str(json.loads(body).get("message", ""))[:300]
        except ValueError:
            return str(body)[:300]
    return str(error)[:300]


class Kube:
    def __init__(self, settings: KubernetesSettings) -> None:
        self.api = api_client(settings)
        self.dynamic = DynamicClient(self.api)
        self._seen: dict[tuple[str, str, str | None, str], str] = {}

    def close(self) -> None:
        self.api.close()

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as error:
            raise BackendRejected(
                Backend.KUBERNETES, f"{kind}.{api_version} is not served by this cluster"
            ) from error

    def has_api(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves `kind` now, from its group-version's own discovery
        document (one small request): the dynamic client's cache keeps an API that has been
        removed since (KEDA uninstalled) until something misses."""
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        with translated_errors(f"discover {kind}"):
            try:
                found = self.dynamic.request("GET", path).to_dict()
            except NotFoundError:
                return False
        return any(resource.get("kind") == kind for resource in found.get("resources", []))

    def established_crds(self) -> set[str]:
        """Names of the CustomResourceDefinitions whose API is established (servable)."""
        with translated_errors("list CustomResourceDefinitions"):
            crds = client.ApiextensionsV1Api(self.api).list_custom_resource_definition().items
        established = set()
        for crd in crds:
            conditions = (crd.status.conditions if crd.status else None) or []
            name = crd.metadata.name if crd.metadata else None
            if name and any(c.type == "Established" and c.status == "True" for c in conditions):
                established.add(name)
        return established

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        """The object, or None if it does not exist."""
        with translated_errors(f"get {kind} {name}"):
            try:
                return self._resource(api_version, kind).get(name=name, namespace=namespace)
            except NotFoundError:
                return None

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects matching `label_selector` in `namespace`, as plain dicts."""
        with translated_errors(f"list {kind} in {namespace}"):
            found = self._resource(api_version, kind).get(
                namespace=namespace, label_selector=label_selector
            )
        items: list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

    def apply(self, manifest: Manifest) -> Applied:
        """Server-side apply `manifest`; report whether the stored object changed.

        The resourceVersion seen after our last apply is remembered, so the periodic drift
        pass costs one request per object; only the first apply of an object in this process
        reads it first.
        """
        meta = manifest["metadata"]
        kind, name, namespace = manifest["kind"], meta["name"], meta.get("namespace")
        key = (manifest["apiVersion"], kind, namespace, name)
        previous = self._seen.get(key)
        if previous is None:
            before = self.get(manifest["apiVersion"], kind, name, namespace)
            previous = before.metadata.resourceVersion if before is not None else ""
        with translated_errors(f"apply {kind} {name}"):
            after = self._resource(manifest["apiVersion"], kind).server_side_apply(
                body=manifest,
                name=name,
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        self._seen[key] = after.metadata.resourceVersion
        return Applied(kind, name, changed=after.metadata.resourceVersion != previous)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (foreground cascade); False if it was already gone."""
        with translated_errors(f"delete {kind} {name}"):
            try:
                self._resource(api_version, kind).delete(
                    name=name,
                    namespace=namespace,
                    body={"propagationPolicy": "Foreground"},
                )
            except NotFoundError:
                return False
            return True

    def patch_status(
        self, api_version: str, kind: str, name: str, status: Manifest, namespace: str | None = None
    ) -> None:
        with translated_errors(f"patch {kind} {name} status"):
            self._resource(api_version, kind).status.patch(
                body={"status": status},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            )

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource (what autoscalers own)."""
        with translated_errors(f"scale Deployment {name}"):
            client.AppsV1Api(self.api).patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}}
            )

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """Decoded data of a Secret, or None if it does not exist."""
        secret = self.get("v1", "Secret", name, namespace)
        if secret is None:
            return None
        data = secret.to_dict().get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}
