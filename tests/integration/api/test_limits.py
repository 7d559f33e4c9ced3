"""Limits against a hostile client, on `annostack api run` as its own process (memory measured).

Figures asserted here are bounds with wide margins (the machine is shared); the measured
values are in the assertion messages.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid

import httpx
import orjson
import pytest
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.apps.testing import (
    ApiProcess,
    children_of,
    memory_of,
    reset_peak,
    send_chunked,
    serve,
)
from annostack.domain.annotations import BATCH_LIMIT, MAX_BATCH_BYTES
from annostack.services.uploads import MAX_OBJECT_BYTES, MAX_PARTS, PART_PAGE
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.api.test_api import new_dataset, uploaded_item
from tests.integration.push.clients import connect_frame

pytestmark = pytest.mark.integration

MiB = 2**20


def test_a_chunked_body_cannot_bypass_the_body_limit(
    api_process: ApiProcess, tenant_a: ApiTenant
) -> None:
    """1 GiB chunked to batch-save: refused at the route's 64 MiB while reading."""
    reset_peak(api_process.pid)
    _, peak_before = memory_of(api_process.pid)
    status, body, sent = send_chunked(
        api_process.base_url, "/v1/annotations/batch-save", tenant_a.auth, 1024 * MiB
    )
    _, peak_after = memory_of(api_process.pid)
    growth = (peak_after - peak_before) / MiB
    assert status == 413, body[:200]
    assert f"request body over {MAX_BATCH_BYTES} bytes" in orjson.loads(body)["detail"]
    assert sent < 256 * MiB, f"the server read {sent / MiB:.0f} MiB before answering"
    assert growth < 200, f"peak RSS grew by {growth:.0f} MiB"


def _batch(entries: int) -> bytes:
    documents = [{"itemId": 1, "ifNoneMatch": True, "document": {"objects": []}}]
    return orjson.dumps({"source": "lidar", "documents": documents * entries})


def test_a_huge_batch_does_not_stall_the_api_nor_echo_itself(
    api_process: ApiProcess, tenant_a: ApiTenant
) -> None:
    """800,000 entries (about 50 MB): one short 413, and /healthz answers meanwhile."""
    body = _batch(800_000)
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=api_process.base_url, timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/healthz").raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        started = time.perf_counter()
        response = api_process.http.post(
            "/v1/annotations/batch-save",
            content=body,
            headers={**tenant_a.auth, "Content-Type": "application/json"},
        )
        took = time.perf_counter() - started
    finally:
        done.set()
        prober.join()
    assert response.status_code == 413, response.text[:300]
    expected = f"more than {BATCH_LIMIT} documents in one batch; that is the limit"
    assert response.json()["detail"] == expected
    assert len(response.content) < 1024
    worst = max(latencies)
    assert len(latencies) >= 3 and worst < 1.0, (
        f"/healthz worst {worst:.2f}s over {len(latencies)} probes; the batch took {took:.1f}s"
    )
    workers = children_of(api_process.pid)
    peaks = [memory_of(pid)[1] / MiB for pid in workers]
    assert workers and max(peaks) < 600, f"parse workers' peak RSS: {peaks} MiB"


def test_field_errors_are_capped(api: httpx.Client, tenant_a: ApiTenant) -> None:
    entries = b",".join([b'{"itemId": "not a number"}'] * BATCH_LIMIT)
    response = api.post(
        "/v1/annotations/batch-save",
        content=b'{"source": "lidar", "documents": [' + entries + b"]}",
        headers={**tenant_a.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert len(body["detail"]) == 20
    assert body["moreErrors"] == 2 * BATCH_LIMIT - 20  # itemId wrong, document missing
    assert "not a number" not in response.text, "the input is not echoed"


def test_a_10_000_part_upload_gets_its_part_urls_a_page_at_a_time(
    api: httpx.Client, tenant_b: ApiTenant
) -> None:
    dataset = new_dataset(api, tenant_b)
    uploads = f"/v1/datasets/{dataset}/uploads"
    too_big = {"name": "huge.las", "size": MAX_OBJECT_BYTES + 1}
    assert api.post(uploads, json=too_big, headers=tenant_b.auth).status_code == 413
    # S3's largest object is over the default plan's 100Gi: refused before anything is stored.
    largest = {"name": "huge.las", "size": MAX_OBJECT_BYTES}
    over_plan = api.post(uploads, json=largest, headers=tenant_b.auth)
    assert over_plan.status_code == 403 and "plan.storage" in over_plan.text, over_plan.text
    # 90 GiB fits the plan and still needs S3's 10,000 parts (8 MiB parts cover only 78 GiB).
    ticket = api.post(uploads, json={"name": "huge.las", "size": 90 * 2**30}, headers=tenant_b.auth)
    assert ticket.status_code == 201, ticket.text
    assert len(ticket.content) < 200_000
    multipart = ticket.json()["multipart"]
    assert multipart["partCount"] == MAX_PARTS
    assert [p["partNumber"] for p in multipart["parts"]] == list(range(1, PART_PAGE + 1))
    assert multipart["nextPartNumber"] == PART_PAGE + 1
    item = ticket.json()["itemId"]
    parts = f"/v1/items/{item}/upload/parts"
    page = api.get(parts, params={"first": PART_PAGE + 1}, headers=tenant_b.auth).json()
    assert page["parts"][0]["partNumber"] == PART_PAGE + 1
    assert "partNumber=101" in page["parts"][0]["url"]
    last = api.get(parts, params={"first": MAX_PARTS - 10}, headers=tenant_b.auth).json()
    assert len(last["parts"]) == 11 and last["nextPartNumber"] is None
    beyond = api.get(parts, params={"first": MAX_PARTS + 1}, headers=tenant_b.auth)
    assert beyond.status_code == 422
    assert api.delete(f"/v1/items/{item}/upload", headers=tenant_b.auth).status_code == 204
    assert api.get(parts, headers=tenant_b.auth).status_code == 404


NON_STANDARD = [b"NaN", b"Infinity", b"-Infinity", b"1e999999"]


@pytest.mark.parametrize("number", NON_STANDARD)
@pytest.mark.parametrize("padding", [0, 512 * 1024], ids=["inline", "in-a-worker"])
def test_non_standard_numbers_are_refused_by_put_and_batch_alike(
    api: httpx.Client, tenant_a: ApiTenant, number: bytes, padding: int
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    document = b'{"objects": [], "pad": "%s", "score": %s}' % (b"p" * padding, number)
    json_headers = {**tenant_a.auth, "Content-Type": "application/json"}
    single = api.put(
        f"/v1/items/{item}/annotations/lidar",
        content=document,
        headers={**json_headers, "If-None-Match": "*"},
    )
    entry = b'{"itemId": %d, "ifNoneMatch": true, "document": %s}' % (item, document)
    batch = api.post(
        "/v1/annotations/batch-save",
        content=b'{"source": "lidar", "documents": [' + entry + b"]}",
        headers=json_headers,
    )
    for response in (single, batch):
        assert response.status_code == 422, response.text[:300]
        assert response.json()["detail"].startswith("not standard JSON")
    stored = api.get(f"/v1/items/{item}/annotations/lidar", headers=tenant_a.auth)
    assert stored.status_code == 404, "nothing stored"


def test_a_source_with_a_trailing_newline_is_refused(
    api: httpx.Client, tenant_a: ApiTenant
) -> None:
    item = uploaded_item(api, tenant_a, new_dataset(api, tenant_a), b"x")
    put = api.put(
        f"/v1/items/{item}/annotations/lidar%0A",
        json={"objects": []},
        headers={**tenant_a.auth, "If-None-Match": "*"},
    )
    assert put.status_code == 422, put.text
    batch = api.post(
        "/v1/annotations/batch-save",
        json={
            "source": "lidar\n",
            "documents": [{"itemId": item, "ifNoneMatch": True, "document": {"objects": []}}],
        },
        headers=tenant_a.auth,
    )
    assert batch.status_code == 422, batch.text


def _lookups(api: httpx.Client, result: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(f'annostack_tenant_lookups_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def _from(address: str, token: str) -> dict[str, str]:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default FORWARDED_ALLOW_IPS), as it
    # would from an ingress: each test uses its own made-up client addresses.
    return {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}


def _address() -> str:
    """A client address of its own: failures are counted per address in Redis for the whole
    stack, so two tests drawing the same address would share a count. 2001:db8::/32 is the
    documentation range (never a real client), 96 random bits never collide."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | (uuid.uuid4().int >> 32)))


def test_an_unknown_tenant_is_looked_up_once_not_per_request(api: httpx.Client) -> None:
    before = _lookups(api, "missing")
    unknown = f"ast_nosuch{uuid.uuid4().hex[:10]}_secret"
    statuses = {
        api.get("/v1/datasets", headers=_from(_address(), unknown)).status_code for _ in range(20)
    }
    assert statuses == {401}
    malformed = api.get("/v1/datasets", headers=_from(_address(), "ast_Not.A.Name_secret"))
    assert malformed.status_code == 401
    assert _lookups(api, "missing") - before == 1, "20 requests, one Kubernetes API read"


def test_failed_authentications_are_limited_per_client_address(
    stack_settings: Settings, tenant_a: ApiTenant
) -> None:
    api = ApiSettings(auth_failures_allowed=3, auth_failure_window_seconds=30)
    attacker, neighbour = _address(), _address()
    wrong = f"ast_{tenant_a.name}_wrong"
    with serve(create_app(stack_settings, api)) as limited:
        statuses = [
            limited.get("/v1/datasets", headers=_from(attacker, wrong)).status_code
            for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429], "three allowed, the fourth blocks"
        blocked = limited.get("/v1/datasets", headers=_from(attacker, tenant_a.token))
        assert blocked.status_code == 429, "even a valid token, from that address"
        assert "too many failed authentications" in blocked.json()["detail"]
        assert 1 <= int(blocked.headers["retry-after"]) <= 30
        other = limited.get("/v1/datasets", headers=_from(neighbour, tenant_a.token))
        assert other.status_code == 200, "other addresses are not affected"

        ws_url = str(limited.base_url).replace("http://", "ws://").rstrip("/") + "/v1/push"
        with ws_connect(
            ws_url,
            subprotocols=[Subprotocol("v12.stomp")],
            additional_headers={"X-Forwarded-For": attacker},
            open_timeout=10,
        ) as push:
            push.send(connect_frame(tenant_a.token))
            error = str(push.recv(10))
    assert error.startswith("ERROR\n") and "too many failed authentications" in error
