"""The tenant API against the real stack: uploads, annotations, isolation, bad input."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from typing import Any

import httpx
import orjson
import pulsar
import pytest

from annostack.adapters.object_store import ObjectStoreAdmin
from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.apps.testing import serve
from annostack.domain.tenants import WORKER_SUBSCRIPTION
from annostack.services.tenancy import create_api_token
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.conftest import pulsar_client

pytestmark = pytest.mark.integration


def document(objects: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "objects": [
            {
                "id": f"o{i}",
                "type": "3D_BOX",
                "classId": "car",
                "contour": {"center": [i, 0, 0], "size": [4, 2, 1.5], "rotation": [0, 0, 0]},
                "toolSpecific": {"kept": True},
            }
            for i in range(objects)
        ],
        **extra,
    }


def new_dataset(api: httpx.Client, tenant: ApiTenant) -> int:
    body = {
        "name": f"ds-{uuid.uuid4().hex[:8]}",
        "displayName": "Frames",
        "dataType": "POINT_CLOUD",
    }
    response = api.post("/v1/datasets", json=body, headers=tenant.auth)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def uploaded_item(api: httpx.Client, tenant: ApiTenant, dataset: int, payload: bytes) -> int:
    ticket = api.post(
        f"/v1/datasets/{dataset}/uploads",
        json={"name": f"{uuid.uuid4().hex[:6]}.pcd", "size": len(payload)},
        headers=tenant.auth,
    )
    assert ticket.status_code == 201, ticket.text
    # As a browser does: straight to the bucket, no credentials but the signature.
    assert httpx.put(ticket.json()["url"], content=payload).status_code == 200
    done = api.post(f"/v1/items/{ticket.json()['itemId']}/complete", headers=tenant.auth)
    assert done.status_code == 200, done.text
    return int(ticket.json()["itemId"])


def test_upload_through_a_presigned_url_registers_and_enqueues(
    api: httpx.Client, tenant_a: ApiTenant, stack_settings: Settings
) -> None:
    client = pulsar_client(stack_settings)
    consumer = client.subscribe(
        tenant_a.context.names.topic("pointclouds"),
        WORKER_SUBSCRIPTION,
        consumer_type=pulsar.ConsumerType.Shared,
    )
    try:
        dataset = new_dataset(api, tenant_a)
        item = uploaded_item(api, tenant_a, dataset, b"VERSION 0.7\n" * 100)
        registered = api.get(f"/v1/items/{item}", headers=tenant_a.auth).json()
        assert registered["status"] == "uploaded"
        assert registered["checksum"]
        # Earlier tests' uploads to this tenant may still be queued (no worker runs here):
        # passed over, acknowledged, until this item's message comes.
        queued = []
        while item not in queued:
            message = consumer.receive(timeout_millis=10_000)
            consumer.acknowledge(message)
            queued.append(orjson.loads(message.data())["itemId"])
        assert queued.count(item) == 1
    finally:
        client.close()


def test_completion_checks_what_was_uploaded(
    api: httpx.Client, tenant_a: ApiTenant, stack_settings: Settings
) -> None:
    dataset = new_dataset(api, tenant_a)
    ticket = api.post(
        f"/v1/datasets/{dataset}/uploads", json={"name": "a.png", "size": 10}, headers=tenant_a.auth
    ).json()
    missing = api.post(f"/v1/items/{ticket['itemId']}/complete", headers=tenant_a.auth)
    assert missing.status_code == 404
    httpx.put(ticket["url"], content=b"12345")
    wrong = api.post(f"/v1/items/{ticket['itemId']}/complete", headers=tenant_a.auth)
    assert wrong.status_code == 422
    assert "announced 10" in wrong.json()["detail"]
    # More (or less) than announced is removed, every version of it: nothing half-written
    # stays in the bucket or counts against its quota.
    store = ObjectStoreAdmin(stack_settings.s3).client
    prefix = f"data/{dataset}/{ticket['itemId']}"
    bucket = tenant_a.context.names.bucket
    assert not list(store.list_objects(bucket, prefix=prefix, include_version=True))


def test_save_and_load_with_etags(api: httpx.Client, tenant_a: ApiTenant) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x" * 10)
    path = f"/v1/items/{item}/annotations/lidar"
    assert api.put(path, json=document(), headers=tenant_a.auth).status_code == 428
    first = api.put(path, json=document(), headers={**tenant_a.auth, "If-None-Match": "*"})
    assert first.status_code == 200, first.text
    assert first.json() == {"version": 1, "objectCount": 2}
    again = api.put(path, json=document(), headers={**tenant_a.auth, "If-None-Match": "*"})
    assert again.status_code == 412

    loaded = api.get(path, headers=tenant_a.auth)
    assert loaded.json()["objects"][0]["toolSpecific"] == {"kept": True}, "unknown fields kept"
    etag = loaded.headers["etag"]
    second = api.put(path, json=document(5), headers={**tenant_a.auth, "If-Match": etag})
    assert second.json() == {"version": 2, "objectCount": 5}
    stale = api.put(path, json=document(1), headers={**tenant_a.auth, "If-Match": etag})
    assert stale.status_code == 412
    assert len(api.get(path, headers=tenant_a.auth).json()["objects"]) == 5, "nothing overwritten"


def test_two_racing_writers_one_wins(api: httpx.Client, tenant_a: ApiTenant) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    path = f"/v1/items/{item}/annotations/camera"
    api.put(path, json=document(), headers={**tenant_a.auth, "If-None-Match": "*"})
    etag = api.get(path, headers=tenant_a.auth).headers["etag"]

    def write(objects: int) -> int:
        headers = {**tenant_a.auth, "If-Match": etag}
        return api.put(path, json=document(objects), headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(write, [3, 4]))
    assert statuses == [200, 412]


def test_browser_saves_through_presigned_url_are_conditional(
    api: httpx.Client, tenant_a: ApiTenant
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    path = f"/v1/items/{item}/annotations/lidar"
    api.put(path, json=document(), headers={**tenant_a.auth, "If-None-Match": "*"})
    etag = api.get(path, headers=tenant_a.auth).headers["etag"]

    def browser_saves(objects: int) -> dict[str, Any]:
        """As the console does: a fresh revision's URL, the PUT, the commit over `etag`."""
        urls = presigned(api, tenant_a, item)
        once = {"If-None-Match": "*"}
        put = httpx.put(urls["put"], content=orjson.dumps(document(objects)), headers=once)
        assert put.status_code == 200, put.text
        upload = {"itemId": item, "revision": urls["revision"], "ifMatch": etag}
        answer = api.post(
            "/v1/annotations/commit",
            json={"source": "lidar", "uploads": [upload]},
            headers=tenant_a.auth,
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["results"][0]
        return result

    fresh = browser_saves(7)
    assert (fresh["status"], fresh["version"]) == (200, 2), fresh
    stale = browser_saves(1)
    assert stale["status"] == 412, stale
    assert len(httpx.get(presigned(api, tenant_a, item)["get"]).json()["objects"]) == 7
    loaded = api.get(path, headers=tenant_a.auth)
    assert loaded.headers["etag"] == f'"{fresh["etag"]}"', "the API and the URL agree"


def presigned(api: httpx.Client, tenant: ApiTenant, item: int, source: str = "lidar") -> Any:
    answer = api.post(
        "/v1/annotations/presign", json={"source": source, "itemIds": [item]}, headers=tenant.auth
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["urls"][0]


def test_batch_save_and_load_a_sequence(api: httpx.Client, tenant_a: ApiTenant) -> None:
    dataset = new_dataset(api, tenant_a)
    items = [uploaded_item(api, tenant_a, dataset, b"f") for _ in range(12)]
    entries = [{"itemId": i, "ifNoneMatch": True, "document": document(3)} for i in items]
    entries.append({"itemId": 999_999_999, "ifNoneMatch": True, "document": document()})
    bad = {"objects": [{"id": "x", "type": "3D_BOX", "contour": {"center": [1]}}]}
    entries.append({"itemId": items[0], "ifNoneMatch": True, "document": bad})
    saved = api.post(
        "/v1/annotations/batch-save",
        json={"source": "lidar", "documents": entries},
        headers=tenant_a.auth,
    )
    assert saved.status_code == 200, saved.text
    statuses = [r["status"] for r in saved.json()["results"]]
    assert statuses == [200] * 12 + [404, 422]

    loaded = api.post(
        "/v1/annotations/batch-load",
        json={"source": "lidar", "itemIds": [*items, 999_999_999]},
        headers=tenant_a.auth,
    )
    results = loaded.json()["results"]
    assert [r["itemId"] for r in results] == [*items, 999_999_999]
    assert all(len(r["document"]["objects"]) == 3 for r in results[:-1]), "the 422 wrote nothing"
    assert results[-1]["status"] == 404


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nonsense"}, 401),
        ({"Authorization": "Bearer ast_nosuchtenant_abc"}, 401),
        ({"Authorization": "Bearer ass_forged.payload"}, 401),
    ],
)
def test_bad_credentials_are_refused(
    api: httpx.Client, headers: dict[str, str], expected: int
) -> None:
    assert api.get("/v1/datasets", headers=headers).status_code == expected


def test_tenants_cannot_reach_each_other(
    api: httpx.Client, tenant_a: ApiTenant, tenant_b: ApiTenant
) -> None:
    dataset = new_dataset(api, tenant_a)
    item = uploaded_item(api, tenant_a, dataset, b"secret")
    api.put(
        f"/v1/items/{item}/annotations/lidar",
        json=document(),
        headers={**tenant_a.auth, "If-None-Match": "*"},
    )
    # B's token with A's tenant name: the secret is checked in A's own table.
    forged = f"ast_{tenant_a.name}_{tenant_b.token.rsplit('_', 1)[1]}"
    assert api.get("/v1/datasets", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    for method, path in [
        ("GET", f"/v1/datasets/{dataset}"),
        ("GET", f"/v1/items/{item}"),
        ("GET", f"/v1/items/{item}/annotations/lidar"),
        ("POST", f"/v1/items/{item}/complete"),
    ]:
        response = api.request(method, path, headers=tenant_b.auth)
        assert response.status_code == 404, (method, path, response.text)
    loaded = api.post(
        "/v1/annotations/batch-load",
        json={"source": "lidar", "itemIds": [item]},
        headers=tenant_b.auth,
    )
    assert loaded.json()["results"] == [{"itemId": item, "status": 404}]
    # B's commit naming A's item: A's document is not B's to replace, nor to learn about.
    upload = {"itemId": item, "revision": "0" * 24, "ifNoneMatch": True}
    committed = api.post(
        "/v1/annotations/commit",
        json={"source": "lidar", "uploads": [upload]},
        headers=tenant_b.auth,
    )
    assert committed.json()["results"][0]["status"] == 404, committed.text
    refused = api.post(
        "/v1/annotations/presign",
        json={"source": "lidar", "itemIds": [item]},
        headers=tenant_b.auth,
    )
    assert refused.status_code == 404, refused.text


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 422, "json"),
        (
            orjson.dumps({"objects": [{"id": "a", "type": "POLYGON", "points": []}]}),
            422,
            "objects.0",
        ),
        (orjson.dumps({"objects": [{"id": "a", "type": "CUBE"}]}), 422, "objects.0"),
    ],
)
def test_malformed_documents_say_where(
    api: httpx.Client, tenant_a: ApiTenant, body: bytes, status: int, detail: str
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    response = api.put(
        f"/v1/items/{item}/annotations/lidar",
        content=body,
        headers={**tenant_a.auth, "If-None-Match": "*", "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert detail in response.json()["detail"].lower()


def test_keys_never_come_from_raw_strings(api: httpx.Client, tenant_a: ApiTenant) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    for source in ["..%2F..%2Fetc", "LIDAR", "a" * 65, "x.json"]:
        response = api.get(f"/v1/items/{item}/annotations/{source}", headers=tenant_a.auth)
        assert response.status_code in {404, 422}, source
        assert response.status_code != 500


def test_dataset_pages_are_keyset_ordered(api: httpx.Client, tenant_b: ApiTenant) -> None:
    ids = [new_dataset(api, tenant_b) for _ in range(5)]
    seen: list[int] = []
    cursor: int | None = None
    while True:
        params = {"limit": 2, **({"after": cursor} if cursor else {})}
        page = api.get("/v1/datasets", params=params, headers=tenant_b.auth).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in ids] == ids


def test_openapi_and_health(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    schema = api.get("/openapi.json").json()
    assert "/v1/annotations/batch-load" in schema["paths"]
    assert "annostack_api_request_duration_seconds" in api.get("/metrics").text


def test_edit_locks_refuse_saves_by_others(api: httpx.Client, tenant_a: ApiTenant) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    other = {"Authorization": f"Bearer {create_api_token(tenant_a.context, 'colleague')}"}
    lock = api.post(f"/v1/items/{item}/lock", headers=tenant_a.auth)
    assert lock.status_code == 200 and lock.json()["holder"] == "token:tests"
    assert api.post(f"/v1/items/{item}/lock", headers=tenant_a.auth).status_code == 200, "renew"
    taken = api.post(f"/v1/items/{item}/lock", headers=other)
    assert taken.status_code == 409 and "token:tests" in taken.json()["detail"]

    path = f"/v1/items/{item}/annotations/lidar"
    refused = api.put(path, json=document(), headers={**other, "If-None-Match": "*"})
    assert refused.status_code == 409
    batch = api.post(
        "/v1/annotations/batch-save",
        json={
            "source": "lidar",
            "documents": [{"itemId": item, "ifNoneMatch": True, "document": document()}],
        },
        headers=other,
    )
    assert batch.json()["results"][0]["status"] == 409
    mine = api.put(path, json=document(), headers={**tenant_a.auth, "If-None-Match": "*"})
    assert mine.status_code == 200
    assert api.delete(f"/v1/items/{item}/lock", headers=other).status_code == 409
    assert api.delete(f"/v1/items/{item}/lock", headers=tenant_a.auth).status_code == 204
    assert api.post(f"/v1/items/{item}/lock", headers=other).status_code == 200


def test_over_the_rate_limit_gets_429_with_retry_after(
    stack_settings: Settings, tenant_b: ApiTenant
) -> None:
    app = create_app(stack_settings, ApiSettings(rate_limit_per_second=3))
    with serve(app) as limited:
        time.sleep(1 - time.time() % 1)  # start in a fresh one-second window
        responses = [limited.get("/v1/datasets", headers=tenant_b.auth) for _ in range(12)]
        statuses = [r.status_code for r in responses]
    assert 429 in statuses and 200 in statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1


def test_oversized_bodies_get_413(api: httpx.Client, tenant_a: ApiTenant) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    huge = b'{"objects": [], "pad": "' + b"x" * (9 * 2**20) + b'"}'
    response = api.put(
        f"/v1/items/{item}/annotations/lidar",
        content=huge,
        headers={**tenant_a.auth, "If-None-Match": "*", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_each_gateway_takes_its_own_kind_of_credentials(
    stack_settings: Settings, api: httpx.Client, tenant_a: ApiTenant
) -> None:
    admin_token = f"adm-{uuid.uuid4().hex}"
    admin_app = create_app(stack_settings, ApiSettings(gateway="admin", admin_token=admin_token))
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    with serve(admin_app) as admin:
        tokens = f"/admin/v1/tenants/{tenant_a.name}/tokens"
        assert admin.post(tokens, json={"name": "ci"}).status_code == 401
        assert admin.post(tokens, json={"name": "ci"}, headers=tenant_a.auth).status_code == 401
        issued = admin.post(tokens, json={"name": "ci"}, headers=as_admin)
        assert issued.status_code == 201
        session = admin.post(
            f"/admin/v1/tenants/{tenant_a.name}/sessions", json={"user": "alice"}, headers=as_admin
        ).json()["token"]
        missing = admin.post(
            "/admin/v1/tenants/nosuch/tokens", json={"name": "x"}, headers=as_admin
        )
        assert missing.status_code == 404
        assert admin.get("/v1/datasets", headers=as_admin).status_code == 404, "no tenant routes"

    api_token = {"Authorization": f"Bearer {issued.json()['token']}"}
    browser = {"Authorization": f"Bearer {session}"}
    assert api.get("/v1/datasets", headers=api_token).status_code == 200
    assert api.get("/v1/datasets", headers=browser).status_code == 401
    with serve(create_app(stack_settings, ApiSettings(gateway="user"))) as user:
        assert user.get("/v1/datasets", headers=browser).status_code == 200
        assert user.get("/v1/datasets", headers=api_token).status_code == 401
        item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
        lock = user.post(f"/v1/items/{item}/lock", headers=browser)
        assert lock.json()["holder"] == "user:alice"


def test_admin_gateway_refuses_to_start_without_a_token(stack_settings: Settings) -> None:
    with pytest.raises(ValueError, match="ANNOSTACK_API_ADMIN_TOKEN"):
        create_app(stack_settings, ApiSettings(gateway="admin"))


def test_multipart_upload_with_a_presigned_url_per_part(
    stack_settings: Settings, tenant_b: ApiTenant
) -> None:
    threshold = 6 * 2**20
    app = create_app(stack_settings, ApiSettings(multipart_threshold_bytes=threshold))
    payload = bytes(range(256)) * (20 * 2**20 // 256)  # 20 MiB -> parts of 8, 8, 4 MiB
    with serve(app) as api:
        dataset = new_dataset(api, tenant_b)
        ticket = api.post(
            f"/v1/datasets/{dataset}/uploads",
            json={"name": "scan.las", "size": len(payload)},
            headers=tenant_b.auth,
        ).json()
        multipart = ticket["multipart"]
        assert ticket["url"] is None and len(multipart["parts"]) == 3
        size = multipart["partSize"]
        parts = []
        for part in multipart["parts"]:
            start = (part["partNumber"] - 1) * size
            uploaded = httpx.put(part["url"], content=payload[start : start + size])
            assert uploaded.status_code == 200, uploaded.text
            parts.append({"partNumber": part["partNumber"], "etag": uploaded.headers["etag"]})

        item = ticket["itemId"]
        incomplete = api.post(f"/v1/items/{item}/complete", headers=tenant_b.auth)
        assert incomplete.status_code == 422
        done = api.post(f"/v1/items/{item}/complete", json={"parts": parts}, headers=tenant_b.auth)
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "uploaded"
        assert done.json()["size"] == len(payload)


def test_aborting_an_upload_drops_it(stack_settings: Settings, tenant_b: ApiTenant) -> None:
    app = create_app(stack_settings, ApiSettings(multipart_threshold_bytes=6 * 2**20))
    with serve(app) as api:
        dataset = new_dataset(api, tenant_b)
        ticket = api.post(
            f"/v1/datasets/{dataset}/uploads",
            json={"name": "big.bin", "size": 30 * 2**20},
            headers=tenant_b.auth,
        ).json()
        first = ticket["multipart"]["parts"][0]
        assert (
            httpx.put(first["url"], content=b"x" * ticket["multipart"]["partSize"]).status_code
            == 200
        )
        item = ticket["itemId"]
        assert api.delete(f"/v1/items/{item}/upload", headers=tenant_b.auth).status_code == 204
        assert api.get(f"/v1/items/{item}", headers=tenant_b.auth).status_code == 404
        # The parts are gone too: the part URL now points at an aborted upload.
        assert httpx.put(first["url"], content=b"y").status_code == 404
