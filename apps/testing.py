"""Serve the API on a real uvicorn, in a thread or as its own process (tests and benchmarks).

Like `kopf.testing`: the real server and real sockets, not an in-process transport, so
middleware, streaming and connection handling are what production runs. `api_process` runs
`annostack api run` exactly as a pod does, so its memory can be measured on its own; a raw
chunked client and /proc readers go with it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

START_TIMEOUT_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """Run `app` until the block ends; yield a client pointed at it."""
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_max_size=app.state.api_settings.ws_max_size,  # as `annostack api run` sets it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class ApiProcess:
    """`annostack api run` as its own process."""

    http: httpx.Client
    pid: int

    @property
    def base_url(self) -> str:
        return str(self.http.base_url).rstrip("/")


@contextmanager
def api_process(env: dict[str, str], log: Path, cwd: Path | None = None) -> Iterator[ApiProcess]:
    """Run the API with `env` until the block ends (`cwd`: run another checkout's code)."""
    port = _free_port()
    command = [sys.executable, "-m", "annostack", "api", "run", "--host", "127.0.0.1"]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=env, cwd=cwd, stdout=output, stderr=output
        )
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        try:
            deadline = time.monotonic() + 4 * START_TIMEOUT_SECONDS
            while not _healthy(http):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API process did not start; see {log}")
                time.sleep(0.2)
            yield ApiProcess(http, process.pid)
        finally:
            http.close()
            process.terminate()
            process.wait(timeout=30)


def _healthy(http: httpx.Client) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return http.get("/healthz").status_code == 200
    return False


def memory_of(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process: VmRSS and VmHWM from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)

    def in_bytes(name: str) -> int:
        return int(fields[name].split()[0]) * 1024  # "123456 kB"

    return in_bytes("VmRSS"), in_bytes("VmHWM")


def reset_peak(pid: int) -> None:
    """Reset a process's VmHWM to its current RSS (Linux `clear_refs`), to measure one peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def children_of(pid: int) -> list[int]:
    """The direct child processes of `pid` (the API's parse workers)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def send_chunked(
    base_url: str, path: str, headers: dict[str, str], total: int, chunk_bytes: int = 2**20
) -> tuple[int, bytes, int]:
    """POST `total` bytes with no Content-Length (chunked); stop as soon as an answer comes.

    Returns (status, response body, bytes sent). A raw socket, because HTTP clients send the
    whole body before they read the answer. The body is whitespace (JSON that has not begun)
    and, if all of it is sent, an empty batch.
    """
    url = httpx.URL(base_url)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.host}:{url.port}"]
    head += ["Transfer-Encoding: chunked", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    chunk = b"%x\r\n%s\r\n" % (chunk_bytes, b" " * chunk_bytes)
    last = b'{"source": "lidar", "documents": []}'
    sent = 0
    with socket.create_connection((url.host, url.port or 80), timeout=600) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += chunk_bytes
            if sent >= total:
                sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        answer = _read_answer(sock)
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), body, sent


def _read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while True:
        head, separator, body = answer.partition(b"\r\n\r\n")
        if separator:
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"content-length:")
            ]
            if lengths and len(body) >= lengths[0]:
                return answer
        data = sock.recv(65536)
        if not data:
            return answer
        answer += data
