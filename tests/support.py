"""Small helpers shared by the test tiers."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_SECONDS = 0.2


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(POLL_SECONDS)
