"""The three ways an editor loads and saves a sequence, as clients of the same server.

  (a) pre-signed URLs from the API, fetched by curl 6 at a time over reused connections (a
      browser's 6 connections per host); saves PUT new revisions, then commit them in one
      request (If-Match with the ETag the editor holds), as a browser saving through the URLs;
  (b) the API's batch endpoints, one request per sequence (saves conditional, If-Match);
  (c) the row design's endpoints on the same server (saves unconditional: Xtreme1 has no
      version check, DELETE + INSERT overwrites whatever is there).

(b) and (c) go through one httpx client whose pool holds as many connections as there are
concurrent editors, so both designs see the same connections. Request bodies are encoded
with orjson on the client (as a browser's native JSON.stringify is fast); the save bodies of
(b) and (c) are the same bytes.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.annotation_history import FRAMES, document_body, etag_of

SOURCE = "lidar"
PER_HOST = 6  # a browser's connections per host


@dataclass(frozen=True)
class Sequence:
    """One sequence as a design's client addresses it: its items' ids (per side) and dataset."""

    number: int
    item_ids: list[int]
    dataset: int


class Design:
    """A client of one design: `load` and `save` a whole sequence, raising on any failure."""

    key = ""
    side = "objects"  # which history it works on: the bucket's documents or the rows

    def load(self, sequence: Sequence) -> None:
        raise NotImplementedError

    def save(self, sequence: Sequence) -> None:
        raise NotImplementedError


def save_body(sequence: Sequence) -> bytes:
    """The batch-save body of a sequence, with the ETags its editor holds (the MD5s)."""
    documents = [
        {"itemId": item, "ifMatch": etag_of(document_body(frame)), "document": _raw(frame)}
        for frame, item in enumerate(sequence.item_ids)
    ]
    return orjson.dumps({"source": SOURCE, "documents": documents})


def _raw(frame: int) -> Any:
    """The stored document as a JSON fragment: encoded once, spliced into every body."""
    return orjson.Fragment(document_body(frame))


class Batch(Design):
    key = "b_batch_endpoints"

    def __init__(self, http: httpx.Client, auth: dict[str, str]) -> None:
        self.http, self.auth = http, {**auth, "Content-Type": "application/json"}

    def load(self, sequence: Sequence) -> None:
        body = orjson.dumps({"source": SOURCE, "itemIds": sequence.item_ids})
        answer = self.http.post("/v1/annotations/batch-load", content=body, headers=self.auth)
        _expect_all_loaded(answer)

    def save(self, sequence: Sequence) -> None:
        answer = self.http.post(
            "/v1/annotations/batch-save", content=save_body(sequence), headers=self.auth
        )
        _expect_all_saved(answer)


class Rows(Design):
    key = "c_rows_xtreme1"
    side = "rows"

    def __init__(self, http: httpx.Client, auth: dict[str, str]) -> None:
        self.http, self.auth = http, {**auth, "Content-Type": "application/json"}
        self.editors = 0

    def load(self, sequence: Sequence) -> None:
        body = orjson.dumps({"source": SOURCE, "itemIds": sequence.item_ids})
        answer = self.http.post("/bench/rows/batch-load", content=body, headers=self.auth)
        _expect_all_loaded(answer)

    def save(self, sequence: Sequence) -> None:
        self.editors += 1
        answer = self.http.post(
            "/bench/rows/batch-save",
            params={"dataset": sequence.dataset, "editor": 1 + self.editors % 50},
            content=save_body(sequence),
            headers=self.auth,
        )
        _expect_all_saved(answer)


class Presigned(Design):
    key = "a_presigned_curl_6"

    def __init__(self, http: httpx.Client, auth: dict[str, str]) -> None:
        self.http, self.auth = http, auth
        self.scratch = Path(tempfile.mkdtemp(prefix="annostack-bench-"))
        self.files = {}
        for frame in range(FRAMES):
            path = self.scratch / f"doc-{frame}.json"
            path.write_bytes(document_body(frame))
            self.files[frame] = path

    def urls(self, sequence: Sequence) -> list[dict[str, Any]]:
        body = {"source": SOURCE, "itemIds": sequence.item_ids}
        answer = self.http.post("/v1/annotations/presign", json=body, headers=self.auth)
        _expect(answer)
        urls: list[dict[str, Any]] = answer.json()["urls"]
        return urls

    def load(self, sequence: Sequence) -> None:
        gets = [{"url": u["get"]} for u in self.urls(sequence)]
        curl_parallel(gets, self.scratch)

    def save(self, sequence: Sequence) -> None:
        """As a browser saves: each document PUT to a fresh revision (its URL is signed with
        If-None-Match: *), then one commit of them all, each over the ETag it loaded."""
        urls = self.urls(sequence)
        puts = [
            {"url": u["put"], "upload-file": str(self.files[frame]), "header": "If-None-Match: *"}
            for frame, u in enumerate(urls)
        ]
        curl_parallel(puts, self.scratch)
        uploads = [
            {"itemId": u["itemId"], "revision": u["revision"], "ifMatch": etag_of(document_body(f))}
            for f, u in enumerate(urls)
        ]
        body = {"source": SOURCE, "uploads": uploads}
        _expect_all_saved(self.http.post("/v1/annotations/commit", json=body, headers=self.auth))


def curl_parallel(transfers: list[dict[str, str]], scratch: Path) -> None:
    """One curl process, PER_HOST transfers at a time over reused connections, like a browser.

    Each transfer is its own block of the config (`next`), so a header belongs to its URL.
    Bodies go to /dev/null: the figure is the transfer, and --fail makes any non-2xx fail.
    """
    blocks = []
    for transfer in transfers:
        lines = [f'{name} = "{value}"' for name, value in transfer.items()]
        blocks.append("\n".join([*lines, 'output = "/dev/null"']))
    with tempfile.NamedTemporaryFile("w", dir=scratch, suffix=".conf") as config:
        config.write("\nnext\n".join(blocks) + "\n")
        config.flush()
        done = subprocess.run(
            [
                *("curl", "--silent", "--show-error", "--fail", "--parallel"),
                *("--parallel-max", str(PER_HOST), "--config", config.name),
            ],
            capture_output=True,  # with `next` blocks, curl shows its parallel meter anyway
            check=False,
        )
    if done.returncode != 0:
        raise Failed(f"curl exit {done.returncode}: {done.stderr.decode()[-200:]}")


class Failed(Exception):
    """A sequence not loaded or saved whole: counted as an error, with what went wrong."""


def _expect(answer: httpx.Response) -> None:
    if answer.status_code != 200:
        raise Failed(f"HTTP {answer.status_code}: {answer.text[:200]}")


def _expect_all_loaded(answer: httpx.Response) -> None:
    _expect(answer)
    if answer.content.count(b'"status":200') != FRAMES:  # cheap; parsed only when short
        _per_item(answer)


def _expect_all_saved(answer: httpx.Response) -> None:
    _expect(answer)
    _per_item(answer)


def _per_item(answer: httpx.Response) -> None:
    try:
        results = orjson.loads(answer.content)["results"]
    except orjson.JSONDecodeError as error:
        # The batch load streams: a fetch failing midway ends the body early, after the 200.
        raise Failed(f"truncated answer ({len(answer.content)} bytes): {error}") from error
    statuses = Counter(r["status"] for r in results)
    if set(statuses) != {200}:
        raise Failed(f"per-item statuses {dict(statuses)}")


Action = Callable[[Sequence], None]
