"""Annotation documents a dataset import makes from a format's own files, whatever the format.

Each importer (`xtreme1.import_result` for `result/<frame>.json`, `kitti.import_label_file`
for `label_2/<frame>.txt`) converts a file to JSON values and hands them here, so that every
imported document is checked as any saved one is (size, standard JSON, schema) and named the
same way: the file's n-th document is source `imported` (n = 0), then `imported-<n+1>`.

What a converter could not turn into an annostack object is kept whole in the document under
its format's key (`xtreme1Unconverted`, `kittiUnconverted`) and listed as a `Skip`, so the
import reports it and nothing is dropped. A file that cannot become a document at all is a
`ResultError`, whose message says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from annostack.domain.annotations import CheckedDocument, check_document
from annostack.domain.errors import Invalid, TooLarge
from annostack.domain.exports.report import Skip

IMPORTED_SOURCE = "imported"


class ResultError(ValueError):
    """A file that cannot become annotation documents; the message says why."""


@dataclass(frozen=True)
class ImportedDocument:
    source: str  # `imported` for the file's first document, `imported-<n>` for its n-th
    document: CheckedDocument  # checked as any saved document is
    skipped: list[Skip]  # what was kept unconverted under `kept_under`, and why
    kept_under: str  # the document's key for it: `xtreme1Unconverted`, `kittiUnconverted`


def imported_source(position: int) -> str:
    """The source of the file's document at `position` (0-based)."""
    return IMPORTED_SOURCE if position == 0 else f"{IMPORTED_SOURCE}-{position + 1}"


def checked_import(
    position: int, document: dict[str, Any], skipped: list[Skip], kept_under: str
) -> ImportedDocument:
    """A converted document checked as a saved one is; ResultError saying why if it is not."""
    try:
        checked = check_document(orjson.dumps(document))
    except (Invalid, TooLarge) as error:
        raise ResultError(f"not a valid annotation document once converted: {error}") from None
    return ImportedDocument(imported_source(position), checked, skipped, kept_under)
