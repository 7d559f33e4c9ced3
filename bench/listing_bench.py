"""Signing one page of the item listing: 100 items, each with the derived files of its kind.

No server is involved: URLs are signed locally. Per page mix, in the same run, p50 and p95 over
ROUNDS pages, one thread:

* `presign_all`: our SigV4 presigner, the whole page's keys at one instant (what
  `GET /v1/datasets/{id}/items` does) — the figure the ≤ 5 ms budget is about;
* `sign_derived`: the same plus the typed link models the response is made of;
* the MinIO SDK's `presigned_get_object`, one call per URL (the naive way; the peer).

The mixes: 100 images (3 thumbnails each: 300 URLs), 100 point clouds (compressed cloud, BEV,
preview, tile index: 400), a fusion page of 50 clouds and 50 camera images (350), and the worst
case, 100 videos (info, poster, 3 thumbnails, 8 frames: 1,300).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from annostack.adapters.object_store import minio_client
from annostack.adapters.objects import URL_LIFETIME, Presigner
from annostack.domain.derived import derived_files, derived_key
from annostack.domain.items import FileKind, ItemStatus
from annostack.services.browsing import sign_derived
from annostack.settings import ObjectStoreSettings
from bench.runner import Figures, benchmark, timed

ROUNDS = 200
NAIVE_ROUNDS = 20  # the SDK is ~20x slower; fewer rounds give as stable a median
PAGE = 100
BUDGET_MS = 5.0
BUCKET = "annostack-bench"
SETTINGS = ObjectStoreSettings(
    endpoint="http://127.0.0.1:8333",
    region="us-east-1",
    access_key=SecretStr("AKIDEXAMPLE"),
    secret_key=SecretStr("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
)
MIXES: dict[str, list[FileKind]] = {
    "images": [FileKind.IMAGE] * PAGE,
    "pointclouds": [FileKind.POINT_CLOUD] * PAGE,
    "fusion": [FileKind.POINT_CLOUD, FileKind.IMAGE] * (PAGE // 2),
    "videos": [FileKind.VIDEO] * PAGE,
}
Page = list[tuple[int, FileKind, ItemStatus]]


def page_of(kinds: list[FileKind]) -> Page:
    return [(100_000 + n, kind, ItemStatus.PROCESSED) for n, kind in enumerate(kinds)]


def keys_of(page: Page) -> list[str]:
    return [derived_key(i, f.name) for i, kind, status in page for f in derived_files(kind, status)]


def one_mix(kinds: list[FileKind]) -> Figures:
    signer = Presigner(SETTINGS)
    sdk = minio_client(SETTINGS)
    page = page_of(kinds)
    keys = keys_of(page)

    def ours() -> list[str]:
        return signer.presign_all("GET", BUCKET, keys, URL_LIFETIME, datetime.now(UTC))

    def with_models() -> object:
        return sign_derived(signer, BUCKET, page, datetime.now(UTC))

    def naive() -> list[str]:
        return [sdk.presigned_get_object(BUCKET, key, expires=URL_LIFETIME) for key in keys]

    signer.presign("GET", BUCKET, "warm-up")  # the day's signing key, derived once per day
    moment = datetime.now(UTC)
    same = signer.presign("GET", BUCKET, keys[0], URL_LIFETIME, moment)
    theirs = sdk.get_presigned_url("GET", BUCKET, keys[0], URL_LIFETIME, request_date=moment)
    assert same == theirs, "both sign the same URL"
    presign_all = timed(ours, ROUNDS)
    sdk_per_url = timed(naive, NAIVE_ROUNDS)
    return {
        "urls": len(keys),
        "presign_all": presign_all,
        "sign_derived_with_models": timed(with_models, ROUNDS),
        "minio_presigned_get_object_per_url": sdk_per_url,
        "speed_up_p50": round(sdk_per_url["p50_ms"] / presign_all["p50_ms"], 1),
        "within_budget": presign_all["p50_ms"] <= BUDGET_MS,
    }


@benchmark("listing")
def listing_bench() -> Figures:
    figures: Figures = {name: one_mix(kinds) for name, kinds in MIXES.items()}
    return figures | {
        "page_items": PAGE,
        "budget_ms": BUDGET_MS,
        "url_lifetime_seconds": int(URL_LIFETIME / timedelta(seconds=1)),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
