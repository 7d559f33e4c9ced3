"""Progress output for long work: builds, downloads, waiting for servers.

Long steps print a steady status line (elapsed time, lines of output so far, the latest line)
every few seconds instead of minutes of silence; the full output goes to a log file that the
error message names. Plain lines rather than a live widget, so CI logs read the same as a
terminal.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)

HEARTBEAT_SECONDS = 10.0  # often enough to show life, rare enough to keep CI logs short
TAIL_LINES = 25


class CommandFailed(RuntimeError):
    """A build or setup command exited non-zero; the message carries its last output lines."""


def say(message: str) -> None:
    console.print(message)


def run_logged(
    argv: Sequence[str],
    *,
    label: str,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a long command, logging all output and printing a heartbeat while it runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    lines = 0
    say(f"[bold]{label}[/bold] … (log: {log_path})")
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc,
    ):
        assert proc.stdout is not None
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=_heartbeat, args=(label, started, tail, stop), daemon=True
        )
        heartbeat.start()
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            lines += 1
        proc.wait()
        stop.set()
        heartbeat.join()
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise CommandFailed(
            f"{label} failed (exit {proc.returncode}) after {elapsed:.0f}s; "
            f"full log: {log_path}\n" + "\n".join(tail)
        )
    say(f"  {label}: done in {elapsed:.0f}s ({lines} lines of output)")


def _heartbeat(label: str, started: float, tail: deque[str], stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        latest = tail[-1] if tail else "(no output yet)"
        say(f"  {label}: {time.monotonic() - started:.0f}s … {latest[:120]}")


def last_lines(path: Path, count: int = TAIL_LINES) -> str:
    """The end of a log file, for error messages."""
    if not path.exists():
        return f"(no log at {path})"
    with path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=count))
