"""Which annotation bodies are accepted: standard JSON only, for a document as for a batch."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from annostack.apps.offload import INLINE_BYTES, Offload
from annostack.domain import annotations
from annostack.domain.annotations import (
    BATCH_LIMIT,
    MAX_DOCUMENT_BYTES,
    MAX_REPORTED_ERRORS,
    check_batch,
    check_document,
)
from annostack.domain.errors import Invalid, InvalidFields, TooLarge
from tests.support import wait_for

NON_STANDARD = [b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"123456789012345678901234567890"]
BEYOND_64_BITS = [b"18446744073709551616", b"-9223372036854775809", b"-12345678901234567890123"]
# The edges of what orjson reads exactly, and long digit runs that are no integer.
WITHIN_64_BITS = [
    b"18446744073709551615",
    b"-9223372036854775808",
    b"12345678901234567890.5",
    b"0.12345678901234567890123",
    b"1e-0000000000000000000003",
]
# Where a number may stand: after a colon, in a list across lines, after a string whose last
# character is an escaped backslash (its closing quote is not escaped).
NUMBER_PLACES = [b'{"n": %s}', b'{"n": [1,\n\t%s\r\n]}', b'{"a": "\\\\", "n": %s}']
# Digit runs in strings, even where a number could stand were it not for the quotes.
LONG_DIGITS_IN_STRINGS = [
    b'"123456789012345678901234"',
    b'"a: 12345678901234567890123, b"',
    b'"\\" [-12345678901234567890123] \\""',
    b'"\\\\", "b": "\\" 12345678901234567890123 "',  # after an escaped backslash, a quote
]


def _batch(document: bytes, entries: int = 1) -> bytes:
    return _batch_of(*[document] * entries)


def _batch_of(*documents: bytes) -> bytes:
    entries = [b'{"itemId": 1, "ifNoneMatch": true, "document": ' + d + b"}" for d in documents]
    return b'{"source": "lidar", "documents": [' + b",".join(entries) + b"]}"


@pytest.mark.parametrize("number", NON_STANDARD)
def test_non_standard_numbers_are_refused_in_one_document_and_in_a_batch(number: bytes) -> None:
    document = b'{"objects": [], "score": ' + number + b"}"
    with pytest.raises(Invalid, match="not standard JSON") as single:
        check_document(document)
    with pytest.raises(Invalid, match="not standard JSON") as batch:
        check_batch(_batch(document))
    assert str(single.value).split(":")[0] == str(batch.value).split(":")[0], "the same way"


@pytest.mark.parametrize("place", NUMBER_PLACES)
@pytest.mark.parametrize("number", BEYOND_64_BITS)
def test_integers_beyond_64_bits_are_refused_wherever_they_stand(
    number: bytes, place: bytes
) -> None:
    document = place % number
    expected = r"^not standard JSON \(.*\): an integer beyond 64 bits$"
    with pytest.raises(Invalid, match=expected):
        check_document(document)
    with pytest.raises(Invalid, match=expected):
        check_batch(_batch(document))


@pytest.mark.parametrize("place", NUMBER_PLACES)
@pytest.mark.parametrize("number", WITHIN_64_BITS)
def test_numbers_within_64_bits_are_kept(number: bytes, place: bytes) -> None:
    document = place % number
    assert check_document(document).body == document
    _, [entry] = check_batch(_batch(document))
    assert entry.document is not None
    assert orjson.loads(entry.document.body) == orjson.loads(document)


@pytest.mark.parametrize("string", LONG_DIGITS_IN_STRINGS)
def test_long_digit_runs_in_strings_are_no_numbers_and_cost_no_second_parse(
    string: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stdlib_parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the body was parsed again by the stdlib")

    monkeypatch.setattr(annotations.json, "loads", stdlib_parse)
    document = b'{"objects": [], "id": ' + string + b"}"
    assert check_document(document).body == document
    _, [entry] = check_batch(_batch(document))
    assert entry.document is not None
    assert orjson.loads(entry.document.body) == orjson.loads(document)


def test_a_batch_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []

    def parse_json(body: bytes) -> object:
        parsed.append(body)
        return orjson.loads(body)

    monkeypatch.setattr(annotations, "parse_json", parse_json)
    body = _batch(b'{"objects": [{"id": "a", "type": "CLASSIFICATION"}]}', 3)
    _, entries = check_batch(body)
    assert parsed == [body], "the documents are checked as parsed, not parsed again"
    assert [entry.document.object_count for entry in entries if entry.document] == [1, 1, 1]


def test_what_is_stored_is_what_was_sent() -> None:
    body = b'{"objects": [], "big": 18446744073709551615, "id": "123456789012345678901234"}'
    assert check_document(body).body == body
    _, [entry] = check_batch(_batch(body))
    assert entry.document is not None
    assert orjson.loads(entry.document.body) == orjson.loads(body), "no value rounded or lost"


def test_an_oversized_batch_is_refused_by_its_count_alone() -> None:
    expected = f"more than {BATCH_LIMIT} documents in one batch; that is the limit"
    with pytest.raises(TooLarge, match=expected):
        check_batch(_batch(b'{"objects": []}', 800_000))


def test_an_oversized_batch_is_not_parsed_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse_json(body: bytes) -> object:
        raise AssertionError("the whole body was parsed")

    monkeypatch.setattr(annotations, "parse_json", parse_json)
    with pytest.raises(TooLarge, match=f"more than {BATCH_LIMIT} documents in one batch"):
        check_batch(_batch(b'{"objects": []}', BATCH_LIMIT + 1))


def test_field_errors_are_capped_and_counted() -> None:
    body = b'{"source": "lidar", "documents": [' + b",".join([b'{"itemId": "x"}'] * 500) + b"]}"
    with pytest.raises(InvalidFields) as error:
        check_batch(body)
    assert len(error.value.errors) == MAX_REPORTED_ERRORS
    assert error.value.total == 1000  # each entry: itemId not an integer, document missing
    assert error.value.errors[0]["loc"] == ["body", "documents", 0, "itemId"]
    assert "input" not in error.value.errors[0]


def test_a_bad_document_in_a_batch_is_reported_alone() -> None:
    good = b'{"objects": []}'
    bad = b'{"objects": [{"id": "a", "type": "CUBE"}]}'
    body = b'{"source": "s", "documents": [' + _batch(good)[34:-2] + b"," + _batch(bad)[34:-2]
    _, entries = check_batch(body + b"]}")
    assert [e.error is None for e in entries] == [True, False]
    assert "objects.0" in str(entries[1].error)


def test_a_document_over_the_size_limit_in_a_batch_is_reported_alone() -> None:
    good = b'{"objects": [{"id": "a", "type": "CLASSIFICATION"}]}'
    too_large = b'{"objects": [], "pad": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}'
    _, entries = check_batch(_batch_of(good, too_large))
    assert entries[0].document is not None and entries[0].document.object_count == 1
    assert isinstance(entries[1].error, TooLarge) and entries[1].document is None
    assert f"the limit is {MAX_DOCUMENT_BYTES}" in str(entries[1].error)


def test_large_bodies_are_parsed_in_a_worker_process() -> None:
    offload = Offload(workers=1, memory_bytes=256 * 2**20)
    document = b'{"objects": [], "pad": "' + b"x" * INLINE_BYTES + b'"}'
    exploding = b"[" + b"{}," * (20 * 2**20) + b"{}]"  # 60 MiB: over a GiB as Python objects
    try:
        checked = asyncio.run(offload.parse(document, check_document))
        assert checked.object_count == 0
        with pytest.raises(TooLarge, match="more than 256 MiB to parse"):
            asyncio.run(offload.parse(exploding, check_batch))
        again = asyncio.run(offload.parse(document, check_document))
        assert again.body == document, "the worker survives its MemoryError"
    finally:
        offload.close()


@pytest.mark.parametrize("layout", ["compact", "spaced", "documents-first"])
def test_the_count_is_read_in_any_layout(layout: str) -> None:
    entry = {"itemId": 1, "ifNoneMatch": True, "document": {"objects": []}}
    for entries, refused in ((BATCH_LIMIT, False), (BATCH_LIMIT + 1, True)):
        value: dict[str, object] = {"source": "lidar", "documents": [entry] * entries}
        if layout == "documents-first":
            value = {"documents": value["documents"], "source": "lidar"}
        body = orjson.dumps(value, option=orjson.OPT_INDENT_2 if layout == "spaced" else 0)
        if refused:
            with pytest.raises(TooLarge, match="more than 1000 documents"):
                check_batch(body)
        else:
            assert len(check_batch(body)[1]) == BATCH_LIMIT


def test_a_second_documents_key_cannot_smuggle_a_huge_list() -> None:
    entry = b'{"itemId": 1, "document": {}}'
    body = b'{"documents": [' + entry + b'], "source": "s", "documents": ['
    body += b",".join([entry] * (BATCH_LIMIT + 1)) + b"]}"
    with pytest.raises(TooLarge, match=f"{BATCH_LIMIT + 1} documents in one batch"):
        check_batch(body)  # the JSON reader keeps the last key: counted after the parse


def test_a_malformed_envelope_is_reported_by_the_parser() -> None:
    with pytest.raises(Invalid, match="not standard JSON"):
        check_batch(b'{"source": "s", "documents": [{"itemId": 1,]}')


def test_a_worker_exits_when_its_api_process_is_gone() -> None:
    """An API killed without shutting down (SIGKILL, OOM) leaves no parse worker behind."""
    script = (
        "import asyncio, os\n"
        "from annostack.apps.offload import INLINE_BYTES, Offload\n"
        "from annostack.domain.annotations import check_document\n"
        "offload = Offload(workers=1, memory_bytes=256 * 2**20)\n"
        "body = b'{\"objects\": [], \"pad\": \"' + b'x' * INLINE_BYTES + b'\"}'\n"
        "asyncio.run(offload.parse(body, check_document))\n"
        "print(*offload.pool._processes, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    (worker,) = map(int, done.stdout.split())

    def gone() -> bool:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"

    wait_for(gone, timeout=10, what=f"parse worker {worker} exiting")
