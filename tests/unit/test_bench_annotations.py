"""The annotations benchmark's pure parts: its history and the row design's JSON work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from bench.annotation_clients import Sequence, save_body
from bench.annotation_history import (
    FRAMES,
    OBJECTS,
    Layout,
    document_body,
    etag_of,
    frame_objects,
    re_age_saves,
)
from bench.annotation_server import assemble, rows_of_batch
from bench.servers import evict, resident_bytes
from bench.xtreme1_rows import data_id, sequence_data_ids


def test_every_window_is_saved_once_per_pass_in_an_interleaved_order() -> None:
    layout = Layout(sequences=5, passes=2)
    saves = layout.saves()
    assert Counter(saves) == {(s, f): 2 for s in range(5) for f in range(0, FRAMES, 10)}
    first_pass = saves[: len(saves) // 2]
    # Interleaved: the first sequence's windows are not one run of saves.
    positions = [i for i, (s, _) in enumerate(first_pass) if s == 0]
    assert positions[-1] - positions[0] > len(positions)


def test_re_ageing_rewrites_each_window_of_the_given_sequences_once() -> None:
    saves = re_age_saves(Layout(sequences=5), [1, 3])
    assert sorted(saves) == [(s, f) for s in (1, 3) for f in range(0, FRAMES, 10)]


def test_objects_are_the_sizes_both_sides_store() -> None:
    objects = frame_objects(7)
    assert len(objects) == OBJECTS
    sizes = [len(orjson.dumps(o)) for o in objects]
    assert min(sizes) > 800 and max(sizes) < 900
    assert orjson.loads(document_body(7)) == {"objects": objects}


def test_the_rows_of_a_save_assemble_into_the_documents_it_saved() -> None:
    sequence = Sequence(3, sequence_data_ids(3), 4)
    source, items, rows = rows_of_batch(save_body(sequence))
    assert (source, items) == ("lidar", sequence.item_ids)
    assert len(rows) == FRAMES * OBJECTS
    # As the row server returns them: (id, dataset, data_id, class, JSON, ...).
    fetched = [(n, 4, item, cls, payload) for n, (item, cls, payload) in enumerate(rows)]
    answer = orjson.loads(assemble(source, items, fetched))
    documents = [r["document"] for r in answer["results"]]
    assert documents == [orjson.loads(document_body(f)) for f in range(FRAMES)]


def test_an_editor_holds_the_md5_of_what_it_saved() -> None:
    body = orjson.loads(save_body(Sequence(0, [10, 11, *range(12, 10 + FRAMES)], 1)))
    first = body["documents"][0]
    assert first["ifMatch"] == etag_of(document_body(0))
    assert data_id(2, 5) == 2 * FRAMES + 6


def test_eviction_drops_a_files_pages_from_the_page_cache(tmp_path: Path) -> None:
    data = tmp_path / "volume.dat"
    data.write_bytes(b"x" * 4 * 2**20)
    data.read_bytes()
    assert resident_bytes([tmp_path]) > 0
    assert evict([tmp_path]) == 1
    assert resident_bytes([tmp_path]) == 0
