"""The annotation history both designs are measured on, built once and kept between runs.

Many sequences (300 frames x 30 objects of ~0.85 KB), written as a SaaS database is written:
many editors saving in turn. One save of the history rewrites a window of WINDOW frames of
one sequence (the stretch an editor worked on), and the saves of all sequences are shuffled
together, pass after pass. So the current rows of one sequence are spread over the whole
table in 30 pieces, and its documents over the whole volume: a load is random I/O on both
sides. (Whole-sequence saves would leave each sequence's 9,000 current rows contiguous under
AUTO_INCREMENT ids — the row design's best case, not the shared table's.)

Both sides get the same saves in the same order, with the same objects: the rows' JSON column
holds exactly the object the document holds. The object side lives in a bench tenant of the
local stack that is kept (re-provisioned idempotently, never torn down); the row side in our
own MariaDB's data directory. Each side records what it holds in `state.json` in its cache
directory, and sequences a benchmark run rewrote as a whole are re-aged (rewritten again in
shuffled windows) before the next run measures on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson

FRAMES = 300
OBJECTS = 30
WINDOW = 10  # frames one save of the history rewrites
EDITORS = 50  # created_by / updated_by of the rows: many annotators
SEED = 16  # the number: the same shuffled history on both sides, every build
CLASS_IDS = {"car": 1}  # Xtreme1 keeps a class id per row; the document keeps the class name


@dataclass(frozen=True)
class Layout:
    """The size and shape of a history; `passes` times every sequence is rewritten."""

    sequences: int
    passes: int = 2
    frames: int = FRAMES
    objects: int = OBJECTS
    window: int = WINDOW

    @property
    def objects_total(self) -> int:
        return self.sequences * self.frames * self.objects

    def saves(self) -> list[tuple[int, int]]:
        """(sequence, first frame) of every save of the history, in the order they happen."""
        windows = [
            (s, f) for s in range(self.sequences) for f in range(0, self.frames, self.window)
        ]
        order: list[tuple[int, int]] = []
        rng = random.Random(SEED)  # noqa: S311  (a shuffle, not a secret)
        for _ in range(self.passes):
            rng.shuffle(windows)
            order += windows
        return order


def frame_objects(frame: int) -> list[dict[str, Any]]:
    """The objects of one frame: 30 boxes of ~0.85 KB, the same on both sides.

    The padding is hex from a hash chain, not one repeated character: a store that compresses
    what it keeps (or a disk that does) must not get a 50-fold ratio real annotations never give.
    """
    return [
        {
            "id": f"f{frame}-o{i}",
            "type": "3D_BOX",
            "classId": "car",
            "trackId": i,
            "contour": {
                "center": [frame * 0.1 + i, i * 0.5, 0.8],
                "size": [4.512, 1.873, 1.561],
                "rotation": [0.0, 0.0, 0.0314 * i],
            },
            "attributes": {"occluded": i % 3 == 0, "truncated": False, "pad": _pad(frame, i)},
        }
        for i in range(OBJECTS)
    ]


def _pad(frame: int, index: int) -> str:
    seed = hashlib.sha256(f"{frame}:{index}".encode()).hexdigest()
    return "".join(hashlib.sha256(f"{seed}{n}".encode()).hexdigest() for n in range(10))[:640]


@cache
def document_body(frame: int) -> bytes:
    """One frame's document as stored (orjson, as the API stores what a client sends)."""
    return orjson.dumps({"objects": frame_objects(frame)})


def etag_of(body: bytes) -> str:
    """The ETag the object store gives a single-part PUT: the MD5 of the body."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


@dataclass
class SideState:
    """What one side's cache directory says it holds (`state.json`)."""

    layout: Layout
    built: dict[str, Any] = field(default_factory=dict)
    rewritten: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> SideState | None:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(Layout(**raw["layout"]), raw["built"], raw["rewritten"], raw.get("extra", {}))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(path)


class Progress:
    """One line, rewritten in place: what is being built, how far, how fast, how long left."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.started = self.shown = time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.shown >= 1.0 or self.done >= self.total:
            self.shown = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate else 0.0
            print(
                f"\r  {self.what}: {self.done:,}/{self.total:,} "
                f"({self.done / self.total:.0%}, {rate:,.0f}/s, {left:,.0f} s left)   ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def finish(self) -> float:
        print(file=sys.stderr, flush=True)
        return round(time.monotonic() - self.started, 1)


@contextmanager
def niced() -> Iterator[None]:
    """This process at the lowest priority meanwhile: building data must not starve others.

    Restored after (root may raise a priority again; others stay niced, which is harmless
    for a benchmark that only builds data before it measures, but is said).
    """
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    try:
        yield
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, before)
        except PermissionError:
            print("  (still niced: only root may restore the priority)", file=sys.stderr)


def in_batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def re_age_saves(layout: Layout, sequences: list[int]) -> list[tuple[int, int]]:
    """Window saves that scatter `sequences` again (after a benchmark rewrote them whole)."""
    windows = [(s, f) for s in sequences for f in range(0, layout.frames, layout.window)]
    random.Random(SEED + len(sequences)).shuffle(windows)  # noqa: S311
    return windows


Replay = Callable[[list[tuple[int, int]], Progress], None]
