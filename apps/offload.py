"""CPU-bound request work (parsing large JSON bodies) in worker processes, off the event loop.

Parsing holds the GIL, so a thread does not help: while orjson read an 800,000-entry batch
(50 MB) in a thread, the event loop ran nothing for 2.9 s, and every other request of every
tenant on the replica, `/healthz` included, waited. Bodies above INLINE_BYTES are therefore
parsed by a small pool of processes; smaller ones inline, where parsing costs less than the
round trip to a worker.

Workers are spawned, not forked (the API has threads), and each runs under RLIMIT_DATA: a
body built to explode in memory (64 MiB of `[{},{},...]` is over a GiB of Python objects)
fails as MemoryError in the worker — the request gets 413 — instead of the pod being
OOM-killed. A worker that dies anyway breaks the pool; it is replaced and the requests it
held get 503. A worker whose API process is gone exits by itself (it holds both ends of its
task queue, so it would never see the queue close).
"""

from __future__ import annotations

import asyncio
import os
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TypeVar

from annostack.domain.errors import Overloaded, TooLarge

INLINE_BYTES = 256 * 1024  # ~1 ms of parsing: less than a round trip to a worker
PARENT_CHECK_SECONDS = 1.0
T = TypeVar("T")


def _start_worker(limit_bytes: int, api_pid: int) -> None:
    """In each worker, first: the memory cap, and an exit when the API process is gone."""
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    def exit_with_the_api() -> None:
        while os.getppid() == api_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)  # orphaned: nobody will send work or read results

    threading.Thread(target=exit_with_the_api, name="api-watch", daemon=True).start()


class Offload:
    """Run pure functions of a request body in worker processes (inline when it is small)."""

    def __init__(self, workers: int, memory_bytes: int) -> None:
        self.workers = workers
        self.memory_bytes = memory_bytes
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.memory_bytes, os.getpid()),
        )

    def warm_up(self) -> None:
        """Start a worker now (it imports the parsers), not at the first large request."""
        self.pool.submit(int)

    async def parse(self, body: bytes, function: Callable[[bytes], T]) -> T:
        if len(body) <= INLINE_BYTES:
            return function(body)
        pool = self.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, body)
        except MemoryError as error:
            limit = self.memory_bytes // 2**20
            raise TooLarge(f"the body needs more than {limit} MiB to parse; send less") from error
        except BrokenProcessPool as error:
            if self.pool is pool:
                self.pool = self._start()
            raise Overloaded("the parser restarted; retry") from error

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
