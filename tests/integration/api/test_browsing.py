"""Browsing a dataset through the API on the real stack: items of several kinds processed by a
real worker, listed with every filter and across pages, their derived files fetched through
the pre-signed URLs of the listing, and another tenant refused.

Two tenants of its own (conftest's `owner` and `stranger`, not the session's `tenant_a` and
`tenant_b`): a worker consumes the owner's topics for the module, and the other's dataset ids
must not collide with the owner's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from annostack.domain.pointclouds import read_pcd
from tests.integration.api.conftest import ApiTenant
from tests.integration.api.test_api import document
from tests.integration.workloads import WorkerProcess, jpeg, small_cloud
from tests.support import wait_for

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# WorkerProcess splits clouds above 1,500 points: the big one gets the optional split files.
BIG_POINTS, SMALL_POINTS = 3000, 1000


@dataclass(frozen=True)
class Uploaded:
    dataset: int
    ids: dict[str, int]  # role -> item id


FILES = {
    # role: (name, body)
    "big": ("lidar/000001.pcd", small_cloud(BIG_POINTS, 1)),
    "small": ("lidar/000002.pcd", small_cloud(SMALL_POINTS, 2)),
    "photo": ("camera/000001.jpg", jpeg()),
    "calib": ("calib/000001.txt", b"P2: 721.5 0 609.5 0 0 721.5 172.8 0 0 0 1 0\n"),
    "mesh": ("mesh.obj", b"v 0 0 0\nv 1 0 0\nf 1 2 1\n"),
}
PROCESSED = ("big", "small", "photo")


def upload(api: httpx.Client, tenant: ApiTenant, dataset: int, name: str, body: bytes) -> int:
    ticket = api.post(
        f"/v1/datasets/{dataset}/uploads",
        json={"name": name, "size": len(body)},
        headers=tenant.auth,
    )
    assert ticket.status_code == 201, ticket.text
    # As a browser does: straight to the bucket, no credentials but the signature.
    assert httpx.put(ticket.json()["url"], content=body).status_code == 200
    done = api.post(f"/v1/items/{ticket.json()['itemId']}/complete", headers=tenant.auth)
    assert done.status_code == 200, done.text
    return int(ticket.json()["itemId"])


def new_dataset(api: httpx.Client, tenant: ApiTenant) -> int:
    body = {"name": f"br-{uuid.uuid4().hex[:8]}", "displayName": "Drive", "dataType": "POINT_CLOUD"}
    response = api.post("/v1/datasets", json=body, headers=tenant.auth)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def listing(api: httpx.Client, tenant: ApiTenant, dataset: int, **params: Any) -> dict[str, Any]:
    response = api.get(f"/v1/datasets/{dataset}/items", params=params, headers=tenant.auth)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def listed_ids(api: httpx.Client, tenant: ApiTenant, dataset: int, **params: Any) -> list[int]:
    return [item["id"] for item in listing(api, tenant, dataset, **params)["items"]]


def all_pages(api: httpx.Client, tenant: ApiTenant, dataset: int, **params: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    cursor = None
    while True:
        page = listing(api, tenant, dataset, **params, **({"after": cursor} if cursor else {}))
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next"]
        if cursor is None:
            return pages


@pytest.fixture(scope="module")
def uploaded(api: httpx.Client, owner: ApiTenant, worker: WorkerProcess) -> Uploaded:
    """Five files of five kinds, the processable ones processed by a real worker; the big cloud
    annotated."""
    dataset = new_dataset(api, owner)
    ids = {role: upload(api, owner, dataset, name, body) for role, (name, body) in FILES.items()}

    def processed() -> bool:
        done = listed_ids(api, owner, dataset, status="processed")
        return done == sorted(ids[role] for role in PROCESSED)

    wait_for(processed, timeout=120, what="clouds and the photo processed")
    return Uploaded(dataset, ids)


def test_items_are_listed_with_every_filter_and_across_pages(
    api: httpx.Client, owner: ApiTenant, uploaded: Uploaded
) -> None:
    dataset, ids = uploaded.dataset, uploaded.ids
    saved = api.put(
        f"/v1/items/{ids['big']}/annotations/lidar",
        json=document(objects=3),
        headers={**owner.auth, "If-None-Match": "*"},
    )
    assert saved.status_code == 200, saved.text
    every = sorted(ids.values())

    def only(*roles: str) -> list[int]:
        return sorted(ids[role] for role in roles)

    assert listed_ids(api, owner, dataset) == every, "id order, every kind registered"
    assert listed_ids(api, owner, dataset, status="stored") == only("calib")
    assert listed_ids(api, owner, dataset, status=["stored", "unsupported"]) == only(
        "calib", "mesh"
    )
    assert listed_ids(api, owner, dataset, kind="pointcloud") == only("big", "small")
    assert listed_ids(api, owner, dataset, kind=["image", "sidecar"]) == only("photo", "calib")
    assert listed_ids(api, owner, dataset, namePrefix="lidar/") == only("big", "small")
    assert listed_ids(api, owner, dataset, namePrefix="lidar/%") == [], "% is no wildcard"
    assert listed_ids(api, owner, dataset, hasAnnotations="true") == only("big")
    assert listed_ids(api, owner, dataset, hasAnnotations="false") == only(
        "small", "photo", "calib", "mesh"
    )
    combined = {"kind": "pointcloud", "hasAnnotations": "false", "status": "processed"}
    assert listed_ids(api, owner, dataset, **combined) == only("small")

    pages = all_pages(api, owner, dataset, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [item for page in pages for item in page] == every
    filtered = all_pages(api, owner, dataset, limit=2, status="processed")
    assert filtered == [only("big", "small"), only("photo")]

    items = {item["id"]: item for item in listing(api, owner, dataset)["items"]}
    big, mesh = items[ids["big"]], items[ids["mesh"]]
    assert (big["name"], big["kind"], big["status"]) == ("lidar/000001.pcd", "pointcloud",
                                                         "processed")  # fmt: skip
    assert big["size"] == len(FILES["big"][1]) and big["createdAt"]
    photo = items[ids["photo"]]
    assert (photo["width"], photo["height"]) == (1280, 720), "jpeg()'s size, as the worker read it"
    assert (big["width"], big["height"]) == (None, None), "only images have one"
    (annotation,) = big["annotations"]
    assert annotation["source"] == "lidar" and annotation["version"] == 1
    assert annotation["etag"] == saved.headers["ETag"].strip('"')
    assert annotation["objectCount"] == 3
    assert (mesh["kind"], mesh["status"]) == ("unsupported", "unsupported")
    assert mesh["statusReason"].startswith(".obj files are not processed; supported:")
    assert mesh["derived"] == [] and items[ids["calib"]]["derived"] == []


def test_derived_urls_fetch_what_the_worker_wrote(
    api: httpx.Client, owner: ApiTenant, uploaded: Uploaded
) -> None:
    items = {item["id"]: item for item in listing(api, owner, uploaded.dataset)["items"]}

    def links(role: str) -> dict[str, dict[str, Any]]:
        return {link["name"]: link for link in items[uploaded.ids[role]]["derived"]}

    def fetch(role: str, name: str) -> httpx.Response:
        # No credentials: the signature in the URL is all a browser has.
        return httpx.get(links(role)[name]["url"], timeout=30)

    big = links("big")
    assert list(big) == ["cloud.pcd", "bev.png", "preview.pcd", "tiles/index.json"]
    bev = fetch("big", "bev.png")
    assert bev.status_code == 200 and bev.content.startswith(PNG_SIGNATURE)
    assert len(read_pcd(fetch("big", "cloud.pcd").content)) == BIG_POINTS
    assert orjson.loads(fetch("big", "tiles/index.json").content)["tiles"], "split: tiles listed"
    thumbnail = fetch("photo", "thumb-200.jpg")
    assert thumbnail.status_code == 200 and thumbnail.content.startswith(JPEG_SIGNATURE)
    assert list(links("photo")) == ["thumb-200.jpg", "thumb-400.jpg", "thumb-800.jpg"]
    # Below the split threshold the optional files are listed, marked, and absent.
    small = links("small")
    assert small["preview.pcd"]["optional"] and not small["bev.png"]["optional"]
    assert fetch("small", "preview.pcd").status_code == 404
    assert fetch("small", "bev.png").content.startswith(PNG_SIGNATURE)
    expiries = {link["expiresAt"] for item in items.values() for link in item["derived"]}
    assert len(expiries) == 1, "one page, signed at one instant"


def test_bad_queries_get_a_reason(api: httpx.Client, owner: ApiTenant) -> None:
    dataset = new_dataset(api, owner)
    path = f"/v1/datasets/{dataset}/items"
    too_many = api.get(path, params={"limit": 1001}, headers=owner.auth)
    assert too_many.status_code == 422
    assert "less than or equal to 1000" in too_many.json()["detail"][0]["msg"]
    forged = api.get(path, params={"after": "42"}, headers=owner.auth)
    assert forged.status_code == 422 and "not a cursor" in forged.json()["detail"]
    assert api.get(path, params={"status": "done"}, headers=owner.auth).status_code == 422
    assert listing(api, owner, dataset) == {"items": [], "next": None}


def test_another_tenant_cannot_browse_the_dataset(
    api: httpx.Client, owner: ApiTenant, stranger: ApiTenant
) -> None:
    dataset = new_dataset(api, owner)
    item = upload(api, owner, dataset, "lidar/000009.pcd", small_cloud(200, 9))
    path = f"/v1/datasets/{dataset}/items"
    refused = api.get(path, headers=stranger.auth)
    assert refused.status_code == 404, refused.text
    assert refused.json() == {"detail": f"dataset {dataset} not found"}
    for params in ({"kind": "pointcloud"}, {"hasAnnotations": "false"}, {"limit": 1}):
        assert api.get(path, params=params, headers=stranger.auth).status_code == 404
    # Its own dataset (numbered in its own schema) lists only its own items: none.
    own = new_dataset(api, stranger)
    assert listing(api, stranger, own) == {"items": [], "next": None}
    assert listed_ids(api, owner, dataset) == [item], "the owner still sees it"
