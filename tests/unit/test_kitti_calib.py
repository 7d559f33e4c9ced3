"""The one KITTI calib line reader: every flavour's lines, and a bad line named with its entry."""

from __future__ import annotations

import pytest

from annostack.domain.errors import Invalid
from annostack.domain.kitti_calib import CalibEntry, matrix, read_calib


def test_a_raw_drive_file_is_read_past_its_date() -> None:
    entries = read_calib(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "S_rect_02: 1.242000e+03 3.750000e+02\n"
        "R_rect_00: 1 0 0 0 1 0 0 0 1\n"
    )
    assert entries == {
        "S_rect_02": CalibEntry(2, (1242.0, 375.0)),
        "R_rect_00": CalibEntry(3, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)),
    }


def test_a_tracking_file_reads_as_the_object_benchmark_names() -> None:
    entries = read_calib("P2 1 2 3\nR_rect 1\t0  0\nTr_velo_cam 4\nTr_imu_velo: 5\n\n")
    assert {name: entry.values for name, entry in entries.items()} == {
        "P2": (1.0, 2.0, 3.0),
        "R0_rect": (1.0, 0.0, 0.0),
        "Tr_velo_to_cam": (4.0,),
        "Tr_imu_to_velo": (5.0,),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P0: 1 2\nP2: 1 2 x 4\n", r"calibration line 2 \(P2\): could not convert .*'x'"),
        ("R0_rect 1 0 nan\n", r"calibration line 1 \(R0_rect\) holds a non-finite number"),
        ("P2: 1\n: 1 2 3\n", "calibration line 2 has numbers but no name"),
        ("corner_dist: unknown\n", r"calibration line 1 \(corner_dist\)"),  # only calib_time
    ],
)
def test_a_malformed_line_is_named_with_its_entry(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        read_calib(text)


def test_a_matrix_is_taken_whole_or_refused_naming_its_line() -> None:
    entries = read_calib("T: 1 2 3\nP2: 1 2 3\n")
    assert matrix(entries, "T", 3, 1) == [[1.0], [2.0], [3.0]]
    with pytest.raises(Invalid, match=r"calibration line 2: P2 has 3 values, it must hold 12"):
        matrix(entries, "P2", 3, 4)
    with pytest.raises(Invalid, match="calibration has no R0_rect"):
        matrix(entries, "R0_rect", 3, 3)
