"""Processes and data the integration tests share: a worker run like a pod, small test files."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from annostack.domain.pointclouds import Field, PointCloud, write_pcd
from annostack.domain.tenant_stack import TenantConnection
from tests.support import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    def __init__(self, connection: TenantConnection, log: Path) -> None:
        self.env = {
            **os.environ,
            **connection.to_env(),
            "ANNOSTACK_WORKER_PORT": str(free_port()),
            "ANNOSTACK_WORKER_BIND_ADDRESS": "127.0.0.1",
            "ANNOSTACK_WORKER_RETRY_DELAY_MS": "300",
            "ANNOSTACK_WORKER_MAX_ATTEMPTS": "3",
            "ANNOSTACK_WORKER_SPLIT_ABOVE_POINTS": "1500",
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it consumes (/readyz): on a busy machine importing the
        worker alone can take tens of seconds, which no test's own timeout should absorb."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "annostack", "worker", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, timeout=180, what="worker /readyz")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker exited; see {self.log}")
        port = self.env["ANNOSTACK_WORKER_PORT"]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=30)


def small_cloud(points: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    fields = [Field(n, 4, "F", 1) for n in ("x", "y", "z", "intensity")]
    cloud = PointCloud(fields, np.empty(0), points)
    data = np.empty(points, dtype=cloud.dtype)
    for name in ("x", "y", "z", "intensity"):
        data[name] = rng.normal(scale=60, size=points).astype(np.float32)
    cloud.points = data
    return write_pcd(cloud, "binary")


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1280, 720), (10, 120, 200)).save(out, "JPEG")
    return out.getvalue()
