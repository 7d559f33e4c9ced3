"""Annotation revisions: where documents are, the writer's condition, what a save removes."""

from __future__ import annotations

import pytest

from annostack.adapters.objects import discard_body
from annostack.domain.errors import Invalid, PreconditionFailed, PreconditionRequired
from annostack.services.annotations import Condition, document_key, new_revision


def test_keys_name_a_revision_or_the_key_before_revisions() -> None:
    revision = new_revision()
    assert document_key(7, "lidar") == "annotations/7/lidar.json"
    assert document_key(7, "lidar", revision) == f"annotations/7/lidar/{revision}.json"
    assert new_revision() != revision


@pytest.mark.parametrize(
    "revision",
    ["", "../../data/1/x", "ABCDEF0123456789abcdef01", "0" * 23, "0" * 25, "0" * 23 + "\n"],
)
def test_a_revision_is_only_what_the_api_hands_out(revision: str) -> None:
    with pytest.raises(Invalid, match="not one this API handed out"):
        document_key(7, "lidar", revision)


def test_a_write_must_say_what_it_saves_over() -> None:
    with pytest.raises(PreconditionRequired):
        Condition(None, False).require()


@pytest.mark.parametrize(
    ("condition", "stored", "holds"),
    [
        (Condition("abc", False), "abc", True),
        (Condition("abc", False), "abd", False),
        (Condition("abc", False), None, False),  # gone since it was loaded
        (Condition(None, True), None, True),
        (Condition(None, True), "abc", False),  # someone saved first
    ],
)
def test_the_condition_holds_only_over_what_the_writer_loaded(
    condition: Condition, stored: str | None, holds: bool
) -> None:
    if holds:
        condition.check(stored)
    else:
        with pytest.raises(PreconditionFailed):
            condition.check(stored)


def test_the_delete_document_escapes_keys() -> None:
    body = discard_body(["annotations/1/a&b/<x>.json", "annotations/2/lidar.json"])
    assert body == (
        b"<Delete><Quiet>true</Quiet>"
        b"<Object><Key>annotations/1/a&amp;b/&lt;x&gt;.json</Key></Object>"
        b"<Object><Key>annotations/2/lidar.json</Key></Object></Delete>"
    )
