"""The console: a small page (apps/console/) the API serves itself, on the origin of /v1.

Static files only, no token needed to fetch them: the page asks for an API token and sends
it with every /v1 call. File bytes move between the browser and object storage through
pre-signed URLs, so the page's Content-Security-Policy allows exactly the API's own origin and
the object store's public one, and nothing else (no inline script, no other host).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from annostack.apps.deps import StateDep
from annostack.domain.errors import NotFound
from annostack.settings import ObjectStoreSettings

CONSOLE = Path(__file__).resolve().parents[1] / "console"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


@cache
def _file(name: str) -> bytes:
    return (CONSOLE / name).read_bytes()


def _object_store_origin(s3: ObjectStoreSettings) -> str:
    parts = urlsplit(s3.public_endpoint or s3.endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(s3: ObjectStoreSettings) -> dict[str, str]:
    store = _object_store_origin(s3)
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {store}; img-src 'self' {store}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@router.get("/console")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/console/{name}")
@router.get("/console/", name="console_index")
async def console_file(state: StateDep, name: str = "index.html") -> Response:
    if name not in MEDIA_TYPES:
        raise NotFound(f"the console has no file {name!r}")
    headers = security_headers(state.settings.s3)
    return Response(_file(name), media_type=MEDIA_TYPES[name], headers=headers)
