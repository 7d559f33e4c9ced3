"""Background server processes that `annostack dev down` can find and stop again.

Each process is started detached, in its own session (see `launch`), so it outlives the CLI
and can be signalled as a group, and recorded in ``<state>/<name>.pid`` as ``pid starttime``.
The kernel start time guards against PID reuse: after a reboot or a long pause a recorded PID
may belong to someone else's process, and `down` must stop only what `up` started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_SECONDS = 20.0  # Pulsar flushes its ledgers on SIGTERM; give it time


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: str

    @classmethod
    def read(cls, path: Path) -> ProcessRecord | None:
        try:
            pid, start_time = path.read_text().split()
            return cls(int(pid), start_time)
        except (FileNotFoundError, ValueError):
            return None

    def write(self, path: Path) -> None:
        path.write_text(f"{self.pid} {self.start_time}\n")

    def is_alive(self) -> bool:
        return start_time(self.pid) == self.start_time


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: start time in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; split after its ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return None
    return fields[19]


def spawn(
    argv: Sequence[str],
    *,
    pid_path: Path,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start a server detached from this process and record it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-m", "annostack.devstack.launch"]
    subprocess.run(
        [*launcher, str(pid_path), str(log_path), str(cwd), "--", *argv],
        env={**os.environ, **env} if env else None,
        check=True,
    )
    record = ProcessRecord.read(pid_path)
    if record is None or not record.is_alive():
        raise RuntimeError(f"{argv[0]} exited immediately; see {log_path}")
    return record


def running(pid_path: Path) -> ProcessRecord | None:
    """The recorded process, if it is still the one we started."""
    record = ProcessRecord.read(pid_path)
    return record if record is not None and record.is_alive() else None


def stop(pid_path: Path) -> bool:
    """Stop the recorded process group: SIGTERM, then SIGKILL after the grace period."""
    record = running(pid_path)
    if record is None:
        pid_path.unlink(missing_ok=True)
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while record.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if record.is_alive():
        _signal_group(record.pid, signal.SIGKILL)
        while record.is_alive():
            time.sleep(0.1)
    pid_path.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
