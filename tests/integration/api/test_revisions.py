"""Annotation documents as immutable revisions, on the real stack: what a browser's pre-signed
URL can and cannot do, what a save leaves in the bucket, documents saved before revisions, and
batch saves racing each other."""

from __future__ import annotations

import concurrent.futures
import io
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.api.test_api import document, new_dataset, presigned, uploaded_item
from tests.support import wait_for

pytestmark = pytest.mark.integration

ONCE = {"If-None-Match": "*"}  # what a revision's PUT URL is signed with


def commit(api: httpx.Client, tenant: ApiTenant, item: int, revision: str, **condition: Any) -> Any:
    upload = {"itemId": item, "revision": revision, **condition}
    answer = api.post(
        "/v1/annotations/commit",
        json={"source": "lidar", "uploads": [upload]},
        headers=tenant.auth,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]


def stored_keys(settings: Settings, tenant: ApiTenant, item: int) -> list[str]:
    store = ObjectStoreAdmin(settings.s3).client
    listed = store.list_objects(tenant.context.names.bucket, f"annotations/{item}/", recursive=True)
    return sorted(entry.object_name for entry in listed)


def current_key(api: httpx.Client, tenant: ApiTenant, item: int) -> str:
    return urlsplit(presigned(api, tenant, item)["get"]).path.split("/", 2)[2]


def test_a_revision_url_writes_once_and_only_with_its_condition(
    api: httpx.Client, tenant_a: ApiTenant
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    urls = presigned(api, tenant_a, item)
    body = orjson.dumps(document(2))
    unsigned = httpx.put(urls["put"], content=body)
    assert unsigned.status_code == 403, "If-None-Match is part of the signature"
    assert httpx.put(urls["put"], content=body, headers=ONCE).status_code == 200
    rewrite = httpx.put(urls["put"], content=orjson.dumps(document(9)), headers=ONCE)
    assert rewrite.status_code == 412, "a revision is written once"

    first = commit(api, tenant_a, item, urls["revision"], ifNoneMatch=True)
    assert (first["status"], first["version"], first["objectCount"]) == (200, 1, 2), first
    again = commit(api, tenant_a, item, urls["revision"], ifMatch=first["etag"])
    assert again["status"] == 409, again
    unused = presigned(api, tenant_a, item)["revision"]
    nothing = commit(api, tenant_a, item, unused, ifMatch=first["etag"])
    assert (nothing["status"], "nothing was uploaded" in nothing["error"]) == (422, True), nothing
    forged = commit(api, tenant_a, item, "../../data/1/x", ifMatch=first["etag"])
    assert forged["status"] == 422, forged
    no_condition = commit(api, tenant_a, item, unused)
    assert no_condition["status"] == 428, no_condition

    loaded = api.get(f"/v1/items/{item}/annotations/lidar", headers=tenant_a.auth)
    assert (loaded.json(), loaded.headers["etag"]) == (document(2), f'"{first["etag"]}"')


def test_an_upload_that_is_no_valid_document_is_refused_at_commit_and_removed(
    api: httpx.Client, tenant_a: ApiTenant, stack_settings: Settings
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    urls = presigned(api, tenant_a, item)
    assert httpx.put(urls["put"], content=orjson.dumps(document(1)), headers=ONCE).is_success
    first = commit(api, tenant_a, item, urls["revision"], ifNoneMatch=True)
    bad_bodies = {
        b"{not json": "not standard JSON",
        orjson.dumps({"objects": [{"type": "3D_BOX"}]}): "objects.0.3D_BOX",
    }
    for body, reason in bad_bodies.items():
        urls = presigned(api, tenant_a, item)
        assert httpx.put(urls["put"], content=body, headers=ONCE).is_success
        refused = commit(api, tenant_a, item, urls["revision"], ifMatch=first["etag"])
        assert refused["status"] == 422 and reason in refused["error"], refused
        assert urls["revision"] in refused["error"]
    loaded = api.get(f"/v1/items/{item}/annotations/lidar", headers=tenant_a.auth)
    assert (loaded.json(), loaded.headers["etag"]) == (document(1), f'"{first["etag"]}"')
    current = current_key(api, tenant_a, item)
    wait_for(
        lambda: stored_keys(stack_settings, tenant_a, item) == [current],
        timeout=30,
        what="the refused uploads removed",
    )


def test_a_save_leaves_only_the_current_revision(
    api: httpx.Client, tenant_a: ApiTenant, stack_settings: Settings
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    path = f"/v1/items/{item}/annotations/lidar"
    saved = api.put(path, json=document(1), headers={**tenant_a.auth, **ONCE})
    etag = saved.headers["etag"]
    for objects in (2, 3, 4):
        saved = api.put(path, json=document(objects), headers={**tenant_a.auth, "If-Match": etag})
        assert saved.status_code == 200, saved.text
        stale = api.put(path, json=document(9), headers={**tenant_a.auth, "If-Match": etag})
        assert stale.status_code == 412
        etag = saved.headers["etag"]
    assert saved.json() == {"version": 4, "objectCount": 4}
    # Replaced and refused documents are removed after the answer.
    current = current_key(api, tenant_a, item)
    wait_for(
        lambda: stored_keys(stack_settings, tenant_a, item) == [current],
        timeout=30,
        what=f"only {current} left",
    )


def test_a_document_saved_before_revisions_loads_and_moves_on_its_next_save(
    api: httpx.Client, tenant_a: ApiTenant, stack_settings: Settings
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    # Where a browser's pre-signed PUT wrote before revisions, with no index row.
    legacy, body = f"annotations/{item}/lidar.json", orjson.dumps(document(3))
    store = ObjectStoreAdmin(stack_settings.s3).client
    store.put_object(tenant_a.context.names.bucket, legacy, io.BytesIO(body), len(body))

    path = f"/v1/items/{item}/annotations/lidar"
    loaded = api.get(path, headers=tenant_a.auth)
    assert loaded.json() == document(3)
    first = api.put(path, json=document(1), headers={**tenant_a.auth, **ONCE})
    assert first.status_code == 412, "it exists, even with no row"
    moved = api.put(
        path, json=document(5), headers={**tenant_a.auth, "If-Match": loaded.headers["etag"]}
    )
    assert moved.status_code == 200, moved.text
    assert len(api.get(path, headers=tenant_a.auth).json()["objects"]) == 5
    current = current_key(api, tenant_a, item)
    assert current != legacy
    wait_for(
        lambda: stored_keys(stack_settings, tenant_a, item) == [current],
        timeout=30,
        what="the old key replaced",
    )


def test_racing_batch_saves_win_each_item_once(api: httpx.Client, tenant_a: ApiTenant) -> None:
    dataset = new_dataset(api, tenant_a)
    items = [uploaded_item(api, tenant_a, dataset, b"f") for _ in range(16)]
    first = [{"itemId": i, "ifNoneMatch": True, "document": document(1)} for i in items]
    saved = api.post(
        "/v1/annotations/batch-save",
        json={"source": "lidar", "documents": first},
        headers=tenant_a.auth,
    )
    etags = {r["itemId"]: r["etag"] for r in saved.json()["results"]}

    def save(objects: int) -> list[int]:
        entries = [{"itemId": i, "ifMatch": etags[i], "document": document(objects)} for i in items]
        answer = api.post(
            "/v1/annotations/batch-save",
            json={"source": "lidar", "documents": entries},
            headers=tenant_a.auth,
        )
        assert answer.status_code == 200, answer.text
        return [int(r["status"]) for r in answer.json()["results"]]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threes, fours = pool.map(save, [3, 4])
    assert all(sorted(pair) == [200, 412] for pair in zip(threes, fours, strict=True)), (
        threes,
        fours,
    )
    loaded = api.post(
        "/v1/annotations/batch-load",
        json={"source": "lidar", "itemIds": items},
        headers=tenant_a.auth,
    ).json()["results"]
    winners = [3 if status == 200 else 4 for status in threes]
    assert [len(r["document"]["objects"]) for r in loaded] == winners
