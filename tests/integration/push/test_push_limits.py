"""What an unauthenticated push client can make the server hold: a few KiB, not 16 MiB."""

from __future__ import annotations

import contextlib
import threading

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from annostack.apps.settings import ApiSettings
from annostack.apps.testing import ApiProcess, memory_of, reset_peak
from tests.integration.push.clients import TIMEOUT, connect_frame, raw
from tests.integration.push.conftest import Replica

pytestmark = pytest.mark.integration

MiB = 2**20


def test_a_large_frame_before_connect_gets_error_and_close(
    replicas: list[Replica], push_settings: ApiSettings, alice: str
) -> None:
    limit = push_settings.push_max_connect_bytes
    padding = "x" * limit
    with raw(replicas[0].ws_url) as socket:
        socket.send(connect_frame(alice).replace("\n\n", f"\nx-padding:{padding}\n\n"))
        error = str(socket.recv(TIMEOUT))
        assert error.startswith("ERROR\n")
        assert f"over {limit} bytes (before CONNECT)" in error
        with pytest.raises(ConnectionClosed):
            socket.recv(TIMEOUT)
    with raw(replicas[0].ws_url) as socket:  # the same client, within the limit, connects
        socket.send(connect_frame(alice))
        assert str(socket.recv(TIMEOUT)).startswith("CONNECTED\n")


def test_twenty_unauthenticated_16_mib_messages_cost_next_to_nothing(
    api_process: ApiProcess,
) -> None:
    url = api_process.base_url.replace("http://", "ws://") + "/v1/push"
    closed: list[bool] = []

    def flood(socket: ClientConnection) -> None:
        try:
            socket.send("x" * (16 * MiB))
            socket.recv(TIMEOUT)
        except ConnectionClosed:
            closed.append(True)

    with contextlib.ExitStack() as connections:
        sockets = [connections.enter_context(raw(url)) for _ in range(20)]
        reset_peak(api_process.pid)
        _, peak_before = memory_of(api_process.pid)
        floods = [threading.Thread(target=flood, args=(s,)) for s in sockets]
        for thread in floods:
            thread.start()
        for thread in floods:
            thread.join(60)
        _, peak_after = memory_of(api_process.pid)
    growth = (peak_after - peak_before) / MiB
    assert len(closed) == 20, "every flooding connection is closed"
    assert growth < 50, f"peak RSS grew by {growth:.0f} MiB"
    assert api_process.http.get("/healthz").status_code == 200
