"""The server processes a benchmark measures: their CPU time, their disk reads, their caches.

A `Server` is a name, how to find its processes now (a server may have workers: the API's
parse processes), and the files it keeps its data in. Figures come from /proc: CPU is user +
system time (`/proc/<pid>/stat`), disk reads are `read_bytes` of `/proc/<pid>/io` — bytes the
process made the kernel fetch from the block device, page-cache hits excluded, O_DIRECT reads
included (they are counted where the request is submitted).

Cold caches without `drop_caches` (not writable here): `evict` fsyncs every data file of a
server and tells the kernel it is not needed (POSIX_FADV_DONTNEED). That drops the file's
clean pages from the page cache, unprivileged, and is what makes the next read come from the
disk; `resident_bytes` (util-linux `fincore`) shows that it did. Pages a process has mapped
(mmap) stay; so does whatever a server caches in its own memory (InnoDB's buffer pool).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.runner import process_cpu_seconds


def read_bytes(pid: int) -> int:
    """Bytes a process has had read from the block device (`read_bytes` of /proc/<pid>/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "read_bytes":
            return int(value)
    raise RuntimeError(f"no read_bytes in /proc/{pid}/io")


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (the API's parse workers)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def data_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (path for path in root.rglob("*") if path.is_file())


def evict(roots: Iterable[Path]) -> int:
    """Drop the page-cache pages of every file under `roots`; how many files it went through.

    fsync first: DONTNEED skips dirty pages. Files that vanish meanwhile (a server compacting
    or rotating) are skipped.
    """
    count = 0
    for path in data_files(roots):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(descriptor)
    return count


def resident_bytes(roots: Iterable[Path]) -> int:
    """Bytes of these files now in the page cache (`fincore`)."""
    paths = [str(path) for path in data_files(roots)]
    total = 0
    for start in range(0, len(paths), 500):  # argv stays well below the kernel's limit
        out = subprocess.run(
            [
                "fincore",
                "--bytes",
                "--noheadings",
                "--raw",
                "--output",
                "RES",
                *paths[start:][:500],
            ],
            capture_output=True,
            text=True,
            check=False,  # a file that vanished meanwhile is an error line, not a failure
        ).stdout
        total += sum(int(line) for line in out.split() if line.isdigit())
    return total


@dataclass(frozen=True)
class Usage:
    """CPU seconds and bytes read from disk, of one server, over some interval."""

    cpu_seconds: float
    read_bytes: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu_seconds + other.cpu_seconds, self.read_bytes + other.read_bytes)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu_seconds - other.cpu_seconds, self.read_bytes - other.read_bytes)


NOTHING = Usage(0.0, 0)


@dataclass(frozen=True)
class Server:
    """A measured server: `pids()` are its processes now, `data` where it keeps its files.

    `shared`: other engineers' work runs on it too (the stack's SeaweedFS and TiDB), so its
    figures over an interval are corrected by its idle rate (see `Meter`). `measure`, where a
    process is measured otherwise than from /proc (the client: with its exited children).
    """

    name: str
    pids: Callable[[], list[int]]
    data: tuple[Path, ...] = ()
    shared: bool = False
    measure: Callable[[], Usage] | None = None

    def usage(self) -> Usage:
        if self.measure is not None:
            return self.measure()
        total = NOTHING
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += Usage(process_cpu_seconds(pid), read_bytes(pid))
        return total


def with_children(pid: int) -> Callable[[], list[int]]:
    return lambda: [pid, *children_of(pid)]


@dataclass
class Tally:
    """Usage per server summed over measured intervals, their length and the work done."""

    used: dict[str, Usage] = field(default_factory=dict)
    seconds: float = 0.0
    units: int = 0

    def add(self, used: Mapping[str, Usage], seconds: float, units: int) -> None:
        for name, usage in used.items():
            self.used[name] = self.used.get(name, NOTHING) + usage
        self.seconds += seconds
        self.units += units


@dataclass
class Meter:
    """Usage of several servers over measured intervals, per unit of work (a sequence).

    A shared server's background rate (CPU seconds per second, measured while this benchmark
    does nothing) is subtracted from what it used during an interval: what is left is what
    the benchmark's requests cost it. Disk reads are not corrected (the background reads
    nothing from disk: what it touches was written moments ago and is in the page cache).
    """

    servers: list[Server]
    background: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Usage]:
        return {server.name: server.usage() for server in self.servers}

    def measure_background(self, seconds: float) -> dict[str, float]:
        before, started = self.snapshot(), time.monotonic()
        time.sleep(seconds)
        after, elapsed = self.snapshot(), time.monotonic() - started
        self.background = {
            s.name: (after[s.name] - before[s.name]).cpu_seconds / elapsed
            for s in self.servers
            if s.shared
        }
        return {name: round(rate, 3) for name, rate in self.background.items()}

    def timed(self, tally: Tally, work: Callable[[], int]) -> float:
        """Run `work` (it returns how many sequences it did) and add its usage; seconds."""
        before, started = self.snapshot(), time.perf_counter()
        units = work()
        elapsed = time.perf_counter() - started
        after = self.snapshot()
        tally.add({name: after[name] - before[name] for name in after}, elapsed, units)
        return elapsed

    def per_unit(self, tally: Tally) -> dict[str, dict[str, float]]:
        figures = {}
        units = max(tally.units, 1)
        for name, used in tally.used.items():
            cpu = used.cpu_seconds - self.background.get(name, 0.0) * tally.seconds
            figures[name] = {
                "cpu_seconds": round(max(cpu, 0.0) / units, 4),
                "read_mib": round(used.read_bytes / units / 2**20, 2),
            }
        return figures
