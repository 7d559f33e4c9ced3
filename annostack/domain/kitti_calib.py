"""KITTI calib text, every flavour annostack meets, read into named numbers: ONE line reader.

A calib file is one entry per line, a name then its numbers (a matrix row-major):

* the 3D object benchmark's `calib/<frame>.txt`: `P0: ...`, `R0_rect: ...`, `Tr_velo_to_cam: ...`;
* the tracking benchmark's: `R_rect ...`, `Tr_velo_cam ...`, `Tr_imu_velo ...` — a space instead
  of `: `, and other names, read as the object benchmark's (`ALIASES`) so that every consumer
  asks for one name;
* a raw drive's `calib_cam_to_cam.txt` / `calib_velo_to_cam.txt`: `P_rect_0N`, `R_rect_00`,
  `S_rect_0N`, `R`, `T`, ..., and `calib_time: 09-Jan-2012 13:57:47`, the one entry that is not
  numbers (`TEXT_ENTRIES`).

The reader knows no shapes, since the flavours name their matrices differently: a consumer
takes the names it needs, in their shapes, with `matrix`. Each entry keeps its
line number so that a wrong count names the line as a wrong number does. Two consumers sit on
this module and on nothing of each other: the scenes' camera model (`domain.calibration`) and
the KITTI export's matrices and writer (`domain.exports.kitti_calib`).

Every problem is `Invalid`, naming the line and the entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from annostack.domain.errors import Invalid

ALIASES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}
# A raw drive dates its calibration on a line of its own; it is a timestamp, not a matrix, and no
# consumer needs it. Only named entries are skipped: any other word among numbers is a damaged
# file, and reading past it would hand out a matrix with a number missing.
TEXT_ENTRIES = frozenset({"calib_time"})


@dataclass(frozen=True)
class CalibEntry:
    """The numbers of one line, and which line (1-based) they came from."""

    line: int
    values: tuple[float, ...]


CalibEntries = Mapping[str, CalibEntry]


def read_calib(text: str) -> dict[str, CalibEntry]:
    """Every numeric entry of a calib file by (canonical) name; a later line of a name wins."""
    entries: dict[str, CalibEntry] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, values = _split(line, number)
        if name not in TEXT_ENTRIES:
            entries[ALIASES.get(name, name)] = CalibEntry(number, _numbers(values, name, number))
    return entries


def matrix(entries: CalibEntries, name: str, rows: int, columns: int) -> list[list[float]]:
    """Entry `name` as a rows x columns matrix; Invalid if the file lacks it or it is misshapen."""
    entry = entries.get(name)
    if entry is None:
        raise Invalid(f"calibration has no {name}")
    if len(entry.values) != rows * columns:
        raise Invalid(
            f"calibration line {entry.line}: {name} has {len(entry.values)} values, it must hold "
            f"{rows * columns} ({rows}x{columns})"
        )
    return [list(entry.values[row * columns : (row + 1) * columns]) for row in range(rows)]


def _split(line: str, number: int) -> tuple[str, str]:
    """`name: values`, or `name values` (tracking); the first colon wins (`calib_time: 13:57`)."""
    head, colon, rest = line.partition(":")
    if not colon:  # any whitespace separates, as str.split() reads the numbers after it
        head, _, rest = " ".join(line.split()).partition(" ")
    if not head.strip():
        raise Invalid(f"calibration line {number} has numbers but no name")
    return head.strip(), rest


def _numbers(values: str, name: str, number: int) -> tuple[float, ...]:
    try:
        numbers = tuple(float(value) for value in values.split())
    except ValueError as error:  # float() says which word, e.g. "could not convert ...: 'x'"
        raise Invalid(f"calibration line {number} ({name}): {error}") from None
    if not all(math.isfinite(value) for value in numbers):
        raise Invalid(f"calibration line {number} ({name}) holds a non-finite number")
    return numbers
