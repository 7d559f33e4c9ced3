"""`annostack operator run` as a child process on the host, for the operator tests and benchmarks.

The platform's own operator runs as a pod (`platform.py`); the integration tests and the
operator benchmarks start a fresh one on the host instead, so they can choose its settings,
restart or kill it like a pod, and read its CPU and memory from /proc. Pause the in-cluster
operator around it (`Platform.operator_paused`): two operators would share kopf's peering.
Its output goes to a log file; while it starts, a status line every few seconds says how long
it has waited and what it logged last.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from annostack.devstack.console import HEARTBEAT_SECONDS, last_lines, say
from annostack.devstack.stack import ComponentFailed

START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 30.0  # kopf finishes its running handlers on SIGTERM
POLL_SECONDS = 0.2


def operator_command(health_port: int, metrics_port: int) -> list[str]:
    """`annostack operator run` on loopback."""
    return [
        sys.executable, "-m", "annostack", "operator", "run", "--bind-address", "127.0.0.1",
        "--health-port", str(health_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip


class OperatorProcess:
    """The operator as a child process, restartable and killable like a pod."""

    def __init__(self, env: dict[str, str], log: Path, health_port: int, metrics_port: int) -> None:
        self.env, self.log = env, log
        self.health_port, self.metrics_port = health_port, metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ComponentFailed("the operator has not been started")
        return self.proc.pid

    def start(self) -> None:
        """Start it (output appended to the log) and wait until its /healthz answers."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                operator_command(self.health_port, self.metrics_port),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        started = time.monotonic()
        next_status = started + HEARTBEAT_SECONDS
        while not self.healthy():
            now = time.monotonic()
            if now - started > START_TIMEOUT_SECONDS:
                raise ComponentFailed(
                    f"the operator is not healthy after {START_TIMEOUT_SECONDS:.0f}s; "
                    f"last lines of {self.log}:\n{last_lines(self.log)}"
                )
            if now >= next_status:
                latest = last_lines(self.log, 1).strip() or "(no output yet)"
                say(f"  operator: {now - started:.0f}s … {latest[:120]}")
                next_status += HEARTBEAT_SECONDS
            time.sleep(POLL_SECONDS)

    def healthy(self) -> bool:
        """True once /healthz answers 200; raises if the process has exited."""
        if self.proc is None:
            raise ComponentFailed("the operator has not been started")
        if self.proc.poll() is not None:
            raise ComponentFailed(
                f"the operator exited ({self.proc.returncode}); last lines of {self.log}:\n"
                f"{last_lines(self.log)}"
            )
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.kill()
