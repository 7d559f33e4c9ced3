"""The console page in a real browser (Debian's headless Chromium, driven by Playwright) against
the real stack: it lists a dataset with the thumbnails and BEV previews a real worker wrote,
uploads files through pre-signed PUTs (one, and a multipart one), and saves annotations through
a pre-signed PUT of a new revision and a commit with If-Match, refused with 412 when someone
saved in between. CORS, the
page's Content-Security-Policy and the conditional writes are exercised the way a browser does
them: a blocked request or a script error fails the test.

The page's screenshots are kept in the test artefacts: `test-artifacts/console-*.png` in the
stack's home (ANNOSTACK_DEV_HOME, by default ~/.cache/annostack).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.apps.testing import serve
from annostack.devstack.settings import DevStackSettings
from annostack.domain.pointclouds import Field, PointCloud, write_pcd
from annostack.settings import Settings
from tests.integration.api.conftest import ApiTenant
from tests.integration.api.test_api import document
from tests.integration.api.test_browsing import new_dataset, upload
from tests.integration.workloads import WorkerProcess
from tests.support import wait_for

pytestmark = pytest.mark.integration

ARTIFACTS = DevStackSettings().home / "test-artifacts"  # kept by CI (.gitlab-ci.yml)
MULTIPART_THRESHOLD = 5 * 2**20  # the API's minimum: a 9 MiB file goes up in two parts
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # its 5 s default is short for a 9 MiB upload on CI


def street_photo() -> bytes:
    """A camera frame with something to see in a thumbnail: sky, road, two cars."""
    image = Image.new("RGB", (1280, 720), (135, 180, 225))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 400, 1280, 720), fill=(70, 72, 78))
    draw.polygon([(600, 400), (680, 400), (900, 720), (380, 720)], fill=(95, 97, 104))
    for left, colour in ((180, (200, 40, 40)), (820, (240, 200, 40))):
        draw.rectangle((left, 440, left + 260, 560), fill=colour)
        draw.ellipse((left + 20, 530, left + 80, 590), fill=(20, 20, 20))
        draw.ellipse((left + 180, 530, left + 240, 590), fill=(20, 20, 20))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def lidar_sweep() -> bytes:
    """A scan-like cloud: rings on the ground and three box-shaped objects, so the BEV shows
    shapes (points in metres, LiDAR frame)."""
    rng = np.random.default_rng(7)
    rings = [
        np.column_stack(
            [r * np.cos(a), r * np.sin(a), np.full(a.size, -1.7), np.full(a.size, 20.0)]
        )
        for r in np.arange(4.0, 40.0, 2.5)
        for a in [np.linspace(0, 2 * math.pi, int(r * 40), endpoint=False)]
    ]
    boxes = [
        np.column_stack(
            [
                rng.uniform(x - 2.2, x + 2.2, 1500),
                rng.uniform(y - 0.9, y + 0.9, 1500),
                rng.uniform(-1.7, 0.0, 1500),
                np.full(1500, 80.0),
            ]
        )
        for x, y in ((10.0, 3.0), (-8.0, -4.0), (18.0, -6.0))
    ]
    points = np.vstack([*rings, *boxes]).astype(np.float32)
    fields = [Field(name, 4, "F", 1) for name in ("x", "y", "z", "intensity")]
    cloud = PointCloud(fields, np.empty(0), len(points))
    data = np.empty(len(points), dtype=cloud.dtype)
    for index, name in enumerate(("x", "y", "z", "intensity")):
        data[name] = points[:, index]
    cloud.points = data
    return write_pcd(cloud, "binary")


def multipart_etag(body: bytes, part_size: int) -> str:
    """S3's ETag of a multipart object: md5 of the parts' md5s, dash, the number of parts."""
    parts = [body[i : i + part_size] for i in range(0, len(body), part_size)]
    digests = b"".join(hashlib.md5(part, usedforsecurity=False).digest() for part in parts)
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"


@pytest.fixture(scope="module")
def console_api(api_settings: Settings, installed_crds: None) -> Iterator[httpx.Client]:
    api = ApiSettings(multipart_threshold_bytes=MULTIPART_THRESHOLD)
    with serve(create_app(api_settings, api)) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is needed for the console tests: run `make bootstrap`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page that records what a user would never see: script errors and refused requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    failed: dict[tuple[str, str], str] = {}
    answered: set[tuple[str, str]] = set()
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("requestfailed", lambda r: failed.update({(r.method, r.url): str(r.failure)}))
    opened.on("response", lambda r: answered.add((r.request.method, r.url)))

    def noted(message: ConsoleMessage) -> None:
        # Chromium reports CORS and CSP refusals on the console only. It also logs every
        # answer >= 400 there: the 404 of a document not saved yet and the 412 of a stale
        # save are what the tests expect.
        expected = any(f"status of {code}" in message.text for code in (404, 412))
        if message.type == "error" and not expected:
            problems.append(f"console: {message.text}")

    opened.on("console", noted)
    yield opened
    context.close()
    # A preflighted PUT is reported aborted once and then sent again (Chromium's CORS in the
    # network service); a request counts as failed only if no answer to it ever came.
    problems += [
        f"{m} {url[:60]}: {why}" for (m, url), why in failed.items() if (m, url) not in answered
    ]
    assert not problems, problems


@pytest.fixture(scope="module")
def previewed(console_api: httpx.Client, owner: ApiTenant, worker: WorkerProcess) -> int:
    """A dataset with a photo and a LiDAR sweep, both processed by a real worker."""
    dataset = new_dataset(console_api, owner)
    items = [
        upload(console_api, owner, dataset, "camera/000001.jpg", street_photo()),
        upload(console_api, owner, dataset, "lidar/000001.pcd", lidar_sweep()),
    ]

    def processed() -> bool:
        states = [console_api.get(f"/v1/items/{i}", headers=owner.auth).json() for i in items]
        return all(state["status"] == "processed" for state in states)

    wait_for(processed, timeout=120, what="the photo and the sweep processed")
    return dataset


def _open(page: Page, api: httpx.Client, tenant: ApiTenant, dataset: int) -> None:
    page.goto(f"{str(api.base_url).rstrip('/')}/console/#token={tenant.token}")
    expect(page.locator("#status")).to_contain_text("Connected")
    assert "token" not in page.url, "the token stays out of the address bar"
    page.locator(f'nav button[data-id="{dataset}"]').click()
    expect(page.locator("#status")).to_contain_text("item(s) of")


def _loaded_images(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('.card img')].map((img) => ({
            alt: img.alt, complete: img.complete, width: img.naturalWidth,
            height: img.naturalHeight }))"""
    )
    return result


def test_the_console_lists_a_dataset_with_its_thumbnails_and_bev_previews(
    page: Page, console_api: httpx.Client, owner: ApiTenant, previewed: int
) -> None:
    _open(page, console_api, owner, previewed)
    expect(page.locator(".card")).to_have_count(2)
    expect(page.locator(".card .badge.processed")).to_have_count(2)

    def all_drawn() -> bool:
        images = _loaded_images(page)
        return len(images) == 2 and all(image["complete"] and image["width"] for image in images)

    wait_for(all_drawn, timeout=30, what="the previews drawn from their pre-signed URLs")
    drawn = {image["alt"]: image for image in _loaded_images(page)}
    thumbnail = drawn["thumb-200.jpg of camera/000001.jpg"]
    assert thumbnail["width"] == 200 and thumbnail["height"] in (112, 113)  # 1280x720 to 200
    bev = drawn["bev.png of lidar/000001.pcd"]
    assert bev["width"] > 100 and bev["height"] > 100
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console-dataset.png", full_page=True)


def test_files_uploaded_through_the_console_arrive_whole(
    page: Page, console_api: httpx.Client, owner: ApiTenant, previewed: int
) -> None:
    _open(page, console_api, owner, previewed)
    small = street_photo()
    large = os.urandom(9 * 2**20)  # above the threshold: two parts of 8 MiB and 1 MiB
    for name, body, mime in (
        ("camera/000002.jpg", small, "image/jpeg"),
        ("raw/sweep.bin", large, "application/octet-stream"),
    ):
        page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": body}])
        page.locator("#upload button").click()
        expect(page.locator("#status")).to_contain_text(f"Uploaded {name} (item")

    items = console_api.get(f"/v1/datasets/{previewed}/items", headers=owner.auth).json()
    by_name = {item["name"].split("/")[-1]: item for item in items["items"]}
    assert {"000002.jpg", "sweep.bin"} <= set(by_name)
    checked = {
        name: console_api.get(f"/v1/items/{by_name[name]['id']}", headers=owner.auth).json()
        for name in ("000002.jpg", "sweep.bin")
    }
    assert checked["000002.jpg"]["size"] == len(small)
    assert (
        checked["000002.jpg"]["checksum"].strip('"')
        == hashlib.md5(small, usedforsecurity=False).hexdigest()
    )
    assert checked["sweep.bin"]["size"] == len(large)
    assert checked["sweep.bin"]["checksum"].strip('"') == multipart_etag(large, 8 * 2**20)

    # Noise named .bin reads as a KITTI cloud of 590,000 points spread over 1e38 m: the worker
    # fails it with the reason instead of writing one tile object per point.
    def verdict() -> dict[str, Any]:
        item = by_name["sweep.bin"]["id"]
        answer: dict[str, Any] = console_api.get(f"/v1/items/{item}", headers=owner.auth).json()
        return answer

    wait_for(lambda: verdict()["status"] == "failed", timeout=120, what="the noise refused")
    assert "too far out to split into tiles" in verdict()["statusReason"]


def test_a_save_through_the_console_is_conditional_and_a_stale_one_is_refused(
    page: Page, console_api: httpx.Client, owner: ApiTenant, previewed: int
) -> None:
    _open(page, console_api, owner, previewed)
    card = page.locator(".card", has_text="lidar/000001.pcd")
    item = int(card.get_attribute("data-id") or 0)
    source = f"console{uuid.uuid4().hex[:6]}"
    card.click()  # opens the editor on the default source
    expect(page.locator("#status")).to_contain_text("No console annotations")
    page.fill("#source", source)
    page.locator("#load").click()
    expect(page.locator("#status")).to_contain_text(f"No {source} annotations")
    expect(page.locator("#etag")).to_have_text("not saved yet")

    def editor_saves(document: dict[str, Any]) -> None:
        page.fill("#document", orjson.dumps(document).decode())
        page.locator("#save").click()

    def stored() -> httpx.Response:
        return console_api.get(f"/v1/items/{item}/annotations/{source}", headers=owner.auth)

    first = document(objects=1)
    editor_saves(first)  # a first save: If-None-Match: *
    expect(page.locator("#status")).to_contain_text("Saved")
    assert orjson.loads(stored().content) == first
    assert page.inner_text("#etag") == f"ETag {stored().headers['ETag']}"

    # Someone else saves through the API, with the ETag they loaded.
    theirs = document(objects=2)
    saved = console_api.put(
        f"/v1/items/{item}/annotations/{source}",
        content=orjson.dumps(theirs),
        headers={**owner.auth, "If-Match": stored().headers["ETag"]},
    )
    assert saved.status_code == 200, saved.text

    editor_saves({"objects": []})  # If-Match with the ETag this editor loaded: now stale
    expect(page.locator("#status")).to_contain_text("someone saved these annotations")
    assert orjson.loads(stored().content) == theirs, "the stale save changed nothing"

    page.locator("#load").click()
    expect(page.locator("#status")).to_contain_text("Loaded")
    assert orjson.loads(page.input_value("#document")) == theirs
    mine = document(objects=3, note="the editor's own")
    editor_saves(mine)
    expect(page.locator("#status")).to_contain_text("Saved")
    assert orjson.loads(stored().content) == mine
    page.screenshot(path=ARTIFACTS / "console-editor.png", full_page=True)
