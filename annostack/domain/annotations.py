"""Annotation result documents: one JSON file per (data item, annotation source).

A document holds every object annotated on one item (hundreds for a point-cloud frame). The
schema checks what tools rely on (geometry present and well-formed, ids and classes typed) and
keeps every field it does not know: annotation tools add their own, and a save must never drop
them.

Only standard JSON is accepted, the same way for one document and for a batch: no `NaN` or
`Infinity`, no number beyond a double's range (`1e999999`), no integer beyond 64 bits. Each
would come back to a reader as something else (a JavaScript client reads `null`, a rounded
number or a parse error), so it is refused with a reason instead of stored.

A batch is parsed once, by orjson, and each of its documents is validated as parsed and
encoded once, to be stored: orjson writes back exactly what it read. Integers beyond 64 bits
are the one thing orjson does not refuse (it reads them as rounded floats), so they are found
in the body's text, without a second parse (`_has_an_integer_beyond_64_bits`).

The checks here are pure functions of the request body, so the API runs them in worker
processes (apps.offload): a 50 MB batch is seconds of parsing that must not stop the API's
event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annostack.domain.errors import AnnostackError, Invalid, InvalidFields, TooLarge
from annostack.domain.models import CamelModel

SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SOURCE = re.compile(SOURCE_PATTERN)
MAX_DOCUMENT_BYTES = 8 * 2**20  # a dense segmentation of a 300k-point frame fits easily
BATCH_LIMIT = 1000  # documents per batch request
# A batch body: up to 1,000 documents of a few KiB to a few MiB each. Larger is refused while
# it is read (413), before anything parses it.
MAX_BATCH_BYTES = 64 * 2**20
MAX_OBJECT_ID = 64  # characters
MAX_REPORTED_ERRORS = 20  # a response lists at most this many problems, and says how many more
# orjson reads integers in this range exactly (and writes no other); beyond, as rounded floats.
INTEGER_RANGE = range(-(2**63), 2**64)
# An integer beyond that range has 19 digits at least (-9223372036854775809; a positive one 20).
# Runs that long are found in a copy of the body with each digit as "0" and any other byte as
# "1", by bytes.find: a regex for them over the body costs twice orjson's parse.
DIGITS_AS_ZEROS = bytes(ord("0") if byte in b"0123456789" else ord("1") for byte in range(256))
LONG_RUN = b"0" * 19
# What may come before a JSON number (or its minus sign) and after an integer ("." or "e" after
# one makes it a float); b"": the body's start or end.
BEFORE_A_NUMBER = frozenset((b"", b"[", b":", b",", b" ", b"\t", b"\n", b"\r"))
AFTER_AN_INTEGER = frozenset((b"", b"]", b"}", b",", b" ", b"\t", b"\n", b"\r"))
JSON_SPACE = re.compile(r"[ \t\n\r]*")
NON_STANDARD = "no NaN, Infinity, numbers beyond a double or integers beyond 64 bits"


class Open(BaseModel):
    """Unknown fields are kept as they came."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Vector3 = Annotated[list[float], Field(min_length=3, max_length=3)]


class Box3D(Open):
    center: Vector3 = Field(description="x, y, z of the box centre, metres.")
    size: Vector3 = Field(description="Length, width, height, metres.")
    rotation: Vector3 = Field(description="Roll, pitch, yaw, radians.")


class Box2D(Open):
    x: float
    y: float
    width: float = Field(ge=0)
    height: float = Field(ge=0)


class Point2D(Open):
    x: float
    y: float


class ObjectBase(Open):
    id: str = Field(
        min_length=1, max_length=MAX_OBJECT_ID, description="Object id, unique in the document."
    )
    class_id: str | int | None = Field(default=None, alias="classId")
    track_id: str | int | None = Field(default=None, alias="trackId")
    attributes: dict[str, object] = Field(default_factory=dict)


class Box3DObject(ObjectBase):
    type: Literal["3D_BOX"]
    contour: Box3D


class Box2DObject(ObjectBase):
    type: Literal["2D_BOX", "RECTANGLE"]
    contour: Box2D


class PolygonObject(ObjectBase):
    type: Literal["POLYGON"]
    points: list[Point2D] = Field(min_length=3)


class PolylineObject(ObjectBase):
    type: Literal["POLYLINE"]
    points: list[Point2D] = Field(min_length=2)


class SegmentationObject(ObjectBase):
    type: Literal["SEGMENTATION"]
    point_indices: list[Annotated[int, Field(ge=0)]] = Field(alias="pointIndices")


class ClassificationObject(ObjectBase):
    type: Literal["CLASSIFICATION"]


AnnotationObject = Annotated[
    Box3DObject
    | Box2DObject
    | PolygonObject
    | PolylineObject
    | SegmentationObject
    | ClassificationObject,
    Field(discriminator="type"),
]


class AnnotationDocument(Open):
    """What a client saves for one item and one source."""

    objects: list[AnnotationObject] = Field(default_factory=list, max_length=100_000)
    classifications: list[dict[str, object]] = Field(default_factory=list)


def valid_source(source: str) -> bool:
    # fullmatch: with `match`, `$` lets "lidar\n" through (and a key "lidar\n.json").
    return bool(SOURCE.fullmatch(source))


def parse_json(body: bytes) -> object:
    """The body as Python values if it is standard JSON; Invalid with the reason if not."""
    try:
        value = orjson.loads(body)  # refuses NaN, Infinity and numbers beyond a double's range
    except orjson.JSONDecodeError as error:
        if "memory" in str(error):  # orjson's only sign that its buffer could not be allocated
            raise MemoryError(str(error)) from error
        raise Invalid(f"not standard JSON ({NON_STANDARD}): {error}") from error
    if _has_an_integer_beyond_64_bits(body):
        raise Invalid(f"not standard JSON ({NON_STANDARD}): an integer beyond 64 bits")
    return value


def _has_an_integer_beyond_64_bits(body: bytes) -> bool:
    """Whether `body` has an integer beyond 64 bits; exact for a body orjson read (standard
    JSON otherwise), the only kind it is asked about.

    orjson reads such an integer as a rounded float, which the parsed value cannot tell from a
    float the client wrote, so the text is looked at. Each such integer is a run of 19+ digits.
    Outside strings a digit can only be part of a number, so a run is such an integer if it is
    whole (a minus sign at most before it, only structure or space around it), beyond the range
    and outside every string. That last test is asked last, of the few runs the others let
    through (a hash's digits touch its letters), and reads each byte once however often it is
    asked: a long id in a string is no number, and costs no second parse.
    """
    strings = _Strings(body)
    for start, end in _long_digit_runs(body):
        if _is_an_integer_beyond_64_bits(body, start, end) and not strings.inside(start):
            return True
    return False


def _long_digit_runs(body: bytes) -> Iterator[tuple[int, int]]:
    """Where each run of LONG_RUN or more digits starts and ends, strings included."""
    kinds = body.translate(DIGITS_AS_ZEROS)
    start = kinds.find(LONG_RUN)
    while start != -1:
        end = kinds.find(b"1", start)
        end = len(kinds) if end == -1 else end
        yield start, end
        start = kinds.find(LONG_RUN, end)


def _is_an_integer_beyond_64_bits(body: bytes, start: int, end: int) -> bool:
    """Whether the digits body[start:end], with the minus sign before them if there is one,
    are a whole integer beyond 64 bits (not a fraction, an exponent or part of a word)."""
    first = start - (body[start - 1 : start] == b"-")
    whole = body[first - 1 : first] in BEFORE_A_NUMBER and body[end : end + 1] in AFTER_AN_INTEGER
    # More than 20 digits never fit; counted first, as int() refuses over 4,300 of them.
    return whole and (end - start > 20 or int(body[first:end]) not in INTEGER_RANGE)


class _Strings:
    """Whether positions of a standard JSON text are inside a string, asked in increasing order:
    each byte is counted once, however many positions are asked."""

    def __init__(self, body: bytes) -> None:
        self.body, self.counted, self.quotes = body, 0, 0

    def inside(self, at: int) -> bool:
        """Whether the byte at `at`, a digit, is inside a string."""
        # Before `at`, an odd number of quotes that open or close a string means inside one.
        # Outside strings there is no backslash; inside, a quote is escaped as \" and a
        # backslash as \\: those pairs go first, so that the quote of \\" is not counted as
        # escaped. The text is cut before digits, so never inside a run of backslashes nor
        # between a backslash and the quote it escapes.
        part = self.body[self.counted : at]
        escaped = part.replace(b"\\\\", b"").count(b'\\"')
        self.quotes += part.count(b'"') - escaped
        self.counted = at
        return self.quotes % 2 == 1


@dataclass(frozen=True)
class CheckedDocument:
    """A document as it is stored (the client's bytes) and what its index row records."""

    body: bytes
    object_count: int


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> InvalidFields:
    """The first MAX_REPORTED_ERRORS problems, where and what; never the input itself."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    shown = [
        {"type": p["type"], "loc": [*prefix, *p["loc"]], "msg": p["msg"]}
        for p in problems[:MAX_REPORTED_ERRORS]
    ]
    return InvalidFields(shown, len(problems))


def _validate(value: object) -> AnnotationDocument:
    try:
        return AnnotationDocument.model_validate(value)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        location = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"{location}: {first['msg']}") from error


def _check_size(body: bytes) -> None:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise TooLarge(f"document is {len(body)} bytes; the limit is {MAX_DOCUMENT_BYTES}")


def check_document(body: bytes) -> CheckedDocument:
    """One document as a client sent it: within the size limit, standard JSON, valid."""
    _check_size(body)
    document = _validate(parse_json(body))
    return CheckedDocument(body, len(document.objects))


def _check_parsed_document(document: dict[str, object]) -> CheckedDocument:
    """A document as parse_json read it (a batch's entry), checked as check_document checks one
    and encoded once, to be stored. Only for values parse_json returned: orjson writes those
    back exactly, where a NaN from elsewhere would become a null that no one checked.
    """
    body = orjson.dumps(document)
    _check_size(body)
    return CheckedDocument(body, len(_validate(document).objects))


class BatchSaveEntry(CamelModel):
    item_id: int
    if_match: str | None = None
    if_none_match: bool = False
    document: dict[str, object]


class BatchSaveRequest(CamelModel):
    """`POST /v1/annotations/batch-save`: each document saved on its own condition."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "lidar",
                    "documents": [
                        {"itemId": 42, "ifMatch": '"8c1f0b"', "document": {"objects": []}},
                        {"itemId": 43, "ifNoneMatch": True, "document": {"objects": []}},
                    ],
                }
            ]
        }
    )

    source: str
    documents: list[BatchSaveEntry] = Field(min_length=1, max_length=BATCH_LIMIT)


@dataclass(frozen=True)
class CheckedEntry:
    """One entry of a batch: its document checked, or why it cannot be saved (reported)."""

    item_id: int
    if_match: str | None
    if_none_match: bool
    document: CheckedDocument | None
    error: AnnostackError | None = None


def _check_entry(entry: BatchSaveEntry) -> CheckedEntry:
    try:
        document = _check_parsed_document(entry.document)
    except (Invalid, TooLarge) as error:
        return CheckedEntry(entry.item_id, entry.if_match, entry.if_none_match, None, error)
    return CheckedEntry(entry.item_id, entry.if_match, entry.if_none_match, document)


def _lists_too_many_documents(body: bytes) -> bool:
    """True if the body's `documents` holds more than BATCH_LIMIT entries, found by decoding
    only the first BATCH_LIMIT + 1 of them: parsing all of an 800,000-entry batch takes
    seconds and half a GiB. Anything unexpected answers False and is left to the full parse,
    whose own count check (and the parse workers' memory cap) still holds.
    """
    decoder = json.JSONDecoder()
    try:
        text = body.decode()
        at = _skip_space(text, 0)
        if text[at] != "{":
            return False
        at += 1
        while True:
            key, at = decoder.raw_decode(text, _skip_space(text, at))
            at = _skip_space(text, _skip_space(text, at) + 1)  # past the colon
            if key == "documents" and text[at] == "[":
                return _more_than_the_limit(text, at + 1, decoder)
            _, at = decoder.raw_decode(text, at)
            at = _skip_space(text, at) + 1  # past the comma (or the closing brace)
    except (ValueError, IndexError):
        return False


def _more_than_the_limit(text: str, at: int, decoder: json.JSONDecoder) -> bool:
    for _ in range(BATCH_LIMIT + 1):
        at = _skip_space(text, at)
        if text[at] == "]":
            return False
        _, at = decoder.raw_decode(text, at)
        at = _skip_space(text, at)
        at += text[at] == ","
    return True


def _skip_space(text: str, at: int) -> int:
    space = JSON_SPACE.match(text, at)
    return space.end() if space else at


def check_batch(body: bytes) -> tuple[str, list[CheckedEntry]]:
    """A batch-save body: its source and each entry checked; the request's own errors raise.

    The number of documents is checked before anything else, so an oversized batch costs
    reading its first 1,001 entries, not a parse, a validation and an error for each.
    """
    if _lists_too_many_documents(body):
        raise TooLarge(f"more than {BATCH_LIMIT} documents in one batch; that is the limit")
    value = parse_json(body)
    documents = value.get("documents") if isinstance(value, dict) else None
    if isinstance(documents, list) and len(documents) > BATCH_LIMIT:
        raise TooLarge(f"{len(documents)} documents in one batch; the limit is {BATCH_LIMIT}")
    try:
        request = BatchSaveRequest.model_validate(value)
    except ValidationError as error:
        raise field_errors(error, ("body",)) from None
    return request.source, [_check_entry(entry) for entry in request.documents]
