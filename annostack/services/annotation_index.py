"""The index rows of annotation documents: which revision is current, and moving it.

A row (`annotation_results`) names an item's current document of a source: its revision (the
object holding it), ETag, version and object count. Saving is a compare-and-set on that row:
the writer read it, wrote a new object, and the row moves to the new revision only if it is
still what the writer read. Two writers that read the same row cannot both move it, so exactly
one of them wins; the other's object is left for the caller to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from annostack.adapters.tenant_tables import annotation_results, data_items
from annostack.services.tenancy import TenantContext

RESULTS = annotation_results


@dataclass(frozen=True)
class Current:
    """An item's document of one source, as its index row says."""

    revision: str | None  # None: stored at the key documents had before revisions
    etag: str
    version: int


@dataclass(frozen=True)
class Indexed:
    """Which of the items asked about are the tenant's, and the current document of each."""

    items: frozenset[int]
    current: dict[int, Current]


@dataclass(frozen=True)
class Move:
    """Make `revision` the item's current document, if its row is still `read`."""

    item_id: int
    read: Current | None  # None: the writer found no row (a first save)
    revision: str | None  # saves always name a new one; None puts a row back to before revisions
    etag: str
    object_count: int | None


def indexed(ctx: TenantContext, source: str, item_ids: Sequence[int]) -> Indexed:
    """Items and their current documents of `source`, in one query."""
    if not item_ids:
        return Indexed(frozenset(), {})
    on = sa.and_(RESULTS.c.data_item_id == data_items.c.id, RESULTS.c.source == source)
    query = (
        sa.select(data_items.c.id, RESULTS.c.revision, RESULTS.c.etag, RESULTS.c.version)
        .select_from(data_items.outerjoin(RESULTS, on))
        .where(data_items.c.id.in_(list(item_ids)))
    )
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    current = {
        int(row.id): Current(row.revision, str(row.etag), int(row.version))
        for row in rows
        if row.etag is not None
    }
    return Indexed(frozenset(int(row.id) for row in rows), current)


def move(ctx: TenantContext, source: str, moves: Sequence[Move]) -> dict[int, int]:
    """Apply every move that still holds, in one transaction; the new version of each.

    Rows that exist move in one UPDATE joined to the expected values, first saves are one
    INSERT IGNORE; then reading the rows back tells who won: a row holds a move's revision
    (random, so never anyone else's) only if that move was applied. Both statements lock the
    rows they change, so a concurrent writer that read the same row waits and then finds it
    changed.
    """
    if not moves:
        return {}
    updates = [m for m in moves if m.read is not None]
    inserts = [m for m in moves if m.read is None]
    with ctx.engine.begin() as conn:
        if updates:
            conn.execute(_update(source, updates))
        if inserts:
            conn.execute(_insert(source, inserts))
        query = sa.select(RESULTS.c.data_item_id, RESULTS.c.revision, RESULTS.c.version).where(
            RESULTS.c.source == source,
            RESULTS.c.data_item_id.in_([m.item_id for m in moves]),
        )
        now = {
            int(row.data_item_id): (row.revision, int(row.version)) for row in conn.execute(query)
        }
    return {
        m.item_id: now[m.item_id][1]
        for m in moves
        if m.item_id in now and now[m.item_id][0] == m.revision
    }


def _update(source: str, moves: Sequence[Move]) -> sa.Update:
    expected = _expected(moves)
    return (
        sa.update(RESULTS)
        .where(
            RESULTS.c.source == source,
            RESULTS.c.data_item_id == expected.c.item_id,
            RESULTS.c.etag == expected.c.read_etag,
            RESULTS.c.revision.is_not_distinct_from(expected.c.read_revision),
        )
        .values(
            revision=expected.c.revision,
            etag=expected.c.etag,
            object_count=expected.c.object_count,
            version=RESULTS.c.version + 1,
            updated_at=sa.func.now(),
        )
    )


def _expected(moves: Sequence[Move]) -> sa.Subquery:
    """The moves as a derived table (one SELECT of literals per move, UNION ALL)."""
    selects = [
        sa.select(
            sa.literal(m.item_id, sa.BigInteger).label("item_id"),
            sa.literal(m.read.etag if m.read else "", sa.String).label("read_etag"),
            sa.literal(m.read.revision if m.read else None, sa.String).label("read_revision"),
            sa.literal(m.revision, sa.String).label("revision"),
            sa.literal(m.etag, sa.String).label("etag"),
            sa.literal(m.object_count, sa.Integer).label("object_count"),
        )
        for m in moves
    ]
    table = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return table.subquery("expected")


def _insert(source: str, moves: Sequence[Move]) -> sa.Insert:
    rows = [
        {
            "data_item_id": m.item_id,
            "source": source,
            "version": 1,
            "object_count": m.object_count,
            "etag": m.etag,
            "revision": m.revision,
        }
        for m in moves
    ]
    # IGNORE: a row another writer inserted first stays, and that move lost.
    return sa.insert(RESULTS).values(rows).prefix_with("IGNORE")
