"""Small helpers shared by the test tiers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.2


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(POLL_SECONDS)


def memory_of(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process: VmRSS and VmHWM from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)

    def in_bytes(name: str) -> int:
        return int(fields[name].split()[0]) * 1024  # "123456 kB"

    return in_bytes("VmRSS"), in_bytes("VmHWM")


def children_of(pid: int) -> list[int]:
    """The direct child processes of `pid` (the API's parse workers)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]
