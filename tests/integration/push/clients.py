"""The push tests' clients: stomp.py over WebSocket, the stompjs script, and a raw socket."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import stomp
from stomp.utils import Frame as StompPyFrame
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

TIMEOUT = 10.0
# Node's start, the module load and the WebSocket handshake come before the first event: on
# two cores shared with the whole stack (CI) that alone once took longer than TIMEOUT.
FIRST_EVENT_TIMEOUT = 45.0


class StompPy(stomp.ConnectionListener):  # type: ignore[misc]
    """stomp.py's own WebSocket connection, with every frame it gets put in a queue."""

    def __init__(self, ws_url: str, heartbeats: tuple[int, int] = (0, 0)) -> None:
        parts = urlsplit(ws_url)
        self.frames: queue.Queue[tuple[str, StompPyFrame]] = queue.Queue()
        self.connection = stomp.WSStompConnection(
            [(parts.hostname, parts.port)],
            ws_path=parts.path,
            heartbeats=heartbeats,
            reconnect_attempts_max=1,
        )
        self.connection.set_listener("test", self)

    def on_connected(self, frame: StompPyFrame) -> None:
        self.frames.put(("CONNECTED", frame))

    def on_message(self, frame: StompPyFrame) -> None:
        self.frames.put(("MESSAGE", frame))

    def on_receipt(self, frame: StompPyFrame) -> None:
        self.frames.put(("RECEIPT", frame))

    def on_error(self, frame: StompPyFrame) -> None:
        self.frames.put(("ERROR", frame))

    def on_disconnected(self) -> None:
        self.frames.put(("DISCONNECTED", StompPyFrame("DISCONNECTED")))

    def connect(self, token: str) -> None:
        self.connection.connect("browser", token, wait=True)
        kind, frame = self.next()
        assert kind == "CONNECTED", (kind, frame.headers)

    def subscribe(self, destination: str, sub_id: str) -> None:
        """Subscribe and wait for the server's receipt (so the subscription is live)."""
        self.connection.subscribe(destination, sub_id, headers={"receipt": f"r-{sub_id}"})
        kind, frame = self.next()
        assert kind == "RECEIPT", (kind, frame.headers)

    def next(self, timeout: float = TIMEOUT) -> tuple[str, StompPyFrame]:
        return self.frames.get(timeout=timeout)

    def next_message(self, timeout: float = TIMEOUT) -> tuple[str, dict[str, Any]]:
        kind, frame = self.next(timeout)
        assert kind == "MESSAGE", (kind, frame.headers, frame.body)
        return frame.headers["destination"], json.loads(frame.body)

    def close(self) -> None:
        if self.connection.is_connected():
            # The server may have closed it a moment ago (after an ERROR): nothing to say then.
            with contextlib.suppress(OSError, stomp.exception.StompException):
                self.connection.disconnect()


class StompJs:
    """The Node script (tests/integration/push/js/client.mjs) as a subprocess."""

    def __init__(self, script: Path, ws_url: str, token: str, *destinations: str) -> None:
        self.process = subprocess.Popen(
            ["node", str(script), ws_url, token, *destinations],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()
        self.started = False

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put({"event": "exited", "code": self.process.wait()})

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The script's next event; a timeout fails with what the script printed on stderr."""
        if not self.started:
            timeout = max(timeout, FIRST_EVENT_TIMEOUT)
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            code = self.process.poll()
            state = "still running" if code is None else f"exited {code}"
            stderr = "".join(self.stderr)[-2000:] or "(nothing)"
            message = f"no event from stompjs in {timeout} s ({state}); its stderr: {stderr}"
            raise AssertionError(message) from None
        self.started = True
        return event

    def subscribe(self, destination: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(destination + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.reader.join(TIMEOUT)
        self.stderr_reader.join(TIMEOUT)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def raw(ws_url: str) -> ClientConnection:
    """A bare WebSocket that sends exactly the bytes a test gives it."""
    return ws_connect(ws_url, subprotocols=[Subprotocol("v12.stomp")], open_timeout=TIMEOUT)


def connect_frame(token: str, heartbeat: str = "0,0") -> str:
    return (
        f"CONNECT\naccept-version:1.2\nhost:annostack\npasscode:{token}\nheart-beat:{heartbeat}"
        "\n\n\x00"
    )
