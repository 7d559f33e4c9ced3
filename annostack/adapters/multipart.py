"""A multipart upload to the tenant's bucket as a writable stream, for outputs of unknown size.

An export is written while it is made (`write_archive` and the COCO writer take a stream): its
size is known only at the end, so a single PUT (which needs the length first, or the whole
body) does not fit. `MultipartUpload` buffers one part (`PART_BYTES`) and PUTs it through a
pre-signed URL as soon as it is full, so memory is one part whatever the export's size; the
parts are assembled at `finish`. Every request is one pre-signed URL, as the workers' other
writes are, so the tenant's credentials never leave the signer.

Errors are translated here: an unreachable store or a 5xx is `BackendUnavailable` (the worker
retries the message), any other refusal `BackendRejected`. Parts of an upload that fails are
dropped (`abort`); the bucket's lifecycle rule removes any left by a killed worker.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, BinaryIO

import httpx

from annostack.adapters.objects import Presigner, complete_multipart_body, xml_text
from annostack.domain.errors import Backend, BackendRejected, BackendUnavailable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

PART_BYTES = 8 * 2**20  # S3 needs >= 5 MiB for all parts but the last; 10,000 parts = 80 GiB


class MultipartUpload(io.RawIOBase):
    """Bytes written are sent as parts of one object; `finish` assembles them."""

    def __init__(
        self,
        signer: Presigner,
        http: httpx.Client,
        bucket: str,
        key: str,
        content_type: str,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.signer, self.http, self.bucket, self.key = signer, http, bucket, key
        self.part_bytes = part_bytes
        self.pending = bytearray()
        self.parts: list[tuple[int, str]] = []
        self.written = 0
        reply = self._send("POST", {"uploads": ""}, b"", {"Content-Type": content_type})
        self.upload_id = xml_text(reply.content, "UploadId")
        if not self.upload_id:
            raise BackendRejected(Backend.OBJECT_STORE, "no UploadId in CreateMultipartUpload")

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        self.pending += view
        self.written += len(view)
        while len(self.pending) >= self.part_bytes:
            self._send_part(bytes(self.pending[: self.part_bytes]))
            del self.pending[: self.part_bytes]
        return len(view)

    def finish(self) -> str:
        """Send what is left and assemble the object; its ETag."""
        if self.pending or not self.parts:  # an empty export is still one (empty) part
            self._send_part(bytes(self.pending))
            self.pending.clear()
        body = complete_multipart_body(self.parts)
        reply = self._send("POST", {"uploadId": self.upload_id}, body)
        if b"<Error>" in reply.content:  # S3 may answer 200 and fail while assembling
            raise BackendRejected(Backend.OBJECT_STORE, xml_text(reply.content, "Message"))
        return xml_text(reply.content, "ETag").strip('"')

    def abort(self) -> None:
        # Best effort: the lifecycle rule drops abandoned parts; the original error matters more.
        with suppress(BackendUnavailable, BackendRejected):
            self._send("DELETE", {"uploadId": self.upload_id}, expected=(204, 404))

    def _send_part(self, body: bytes) -> None:
        number = len(self.parts) + 1
        params = {"partNumber": str(number), "uploadId": self.upload_id}
        reply = self._send("PUT", params, body)
        self.parts.append((number, reply.headers.get("etag", "").strip('"')))

    def _send(
        self,
        method: str,
        params: dict[str, str],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        expected: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        url = self.signer.presign(method, self.bucket, self.key, params=params)
        try:
            reply = self.http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise BackendUnavailable(Backend.OBJECT_STORE, type(error).__name__) from error
        if reply.status_code >= 500:
            raise BackendUnavailable(
                Backend.OBJECT_STORE, f"{method} {self.key}: {reply.status_code}"
            )
        if reply.status_code not in expected:
            detail = reply.content[:200].decode(errors="replace")
            raise BackendRejected(Backend.OBJECT_STORE, f"{reply.status_code} {detail}")
        return reply


@contextmanager
def multipart_upload(
    signer: Presigner, http: httpx.Client, bucket: str, key: str, content_type: str
) -> Iterator[BinaryIO]:
    """A stream into a new object: assembled if the block ends normally, aborted if it raises.

    Buffered, so the many small writes of a zip or a JSON writer become few appends."""
    upload = MultipartUpload(signer, http, bucket, key, content_type)
    stream = io.BufferedWriter(upload, buffer_size=2**20)
    try:
        yield stream
        stream.flush()
    except BaseException:
        upload.abort()
        raise
    upload.finish()
