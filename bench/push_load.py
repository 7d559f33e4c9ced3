"""One load-generator process of the push benchmark: many raw STOMP-over-WebSocket clients.

    python -m bench.push_load <ws-url>[,<ws-url>...] <tenant> <first-user> <count> <out.npz>

Client i (user ``u<i>``) connects to the i-th URL round-robin, authenticates with a session
token, subscribes to its own user destination (waiting for the RECEIPT), then records, for
every MESSAGE, the benchmark phase and the latency now - `at` (the publisher's wall clock; same
machine, same clock). Prints ``ready`` once all are subscribed; on ``stop`` on stdin, writes
the latencies per phase to <out.npz> and prints ``done``.

Written for cost, not elegance: the `websockets` asyncio client without compression, and
frames cut by hand rather than parsed (the server's frames are trusted here; the parser is
tested elsewhere). Heart-beats are negotiated as @stomp/stompjs does by default (10 s each
way), and sent, so the server runs its production path.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections import defaultdict

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from annostack.services.tenancy import SessionTokens

CONNECT_CONCURRENCY = 50
HEARTBEAT_MS = 10_000  # @stomp/stompjs's default, both ways
SUBPROTOCOL: Subprotocol = Subprotocol("v12.stomp")
SESSION_KEY = os.environ.get("ANNOSTACK_API_SESSION_KEY", "dev-only-session-key")


class Recorder:
    def __init__(self, clients: int) -> None:
        self.latencies: dict[int, list[float]] = defaultdict(list)
        self.waiting = clients
        self.all_subscribed = asyncio.Event()

    def subscribed(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.all_subscribed.set()

    def record(self, frame: str) -> None:
        if not frame.startswith("MESSAGE"):
            return  # a heart-beat or a RECEIPT
        now = time.time()
        event = orjson.loads(frame[frame.index("\n\n") + 2 : -1])
        self.latencies[event["phase"]].append(now - event["at"])


async def client(url: str, tenant: str, user: str, gate: asyncio.Semaphore, rec: Recorder) -> None:
    token = SessionTokens(SESSION_KEY, 3600).issue(tenant, user)
    async with gate:
        ws = await connect(url, subprotocols=[SUBPROTOCOL], compression=None, open_timeout=60)
        beats = f"heart-beat:{HEARTBEAT_MS},{HEARTBEAT_MS}"
        await ws.send(f"CONNECT\naccept-version:1.2\nhost:b\npasscode:{token}\n{beats}\n\n\x00")
        connected = str(await ws.recv())
        if not connected.startswith("CONNECTED"):
            raise RuntimeError(connected)
        destination = f"/topic/tenant.{tenant}.user.{user}"
        await ws.send(f"SUBSCRIBE\nid:0\ndestination:{destination}\nreceipt:s\n\n\x00")
        receipt = str(await ws.recv())
        if not receipt.startswith("RECEIPT"):
            raise RuntimeError(receipt)
    rec.subscribed()
    beating = asyncio.create_task(_heartbeat(ws))
    async for frame in ws:
        rec.record(str(frame))
    beating.cancel()


async def _heartbeat(ws: ClientConnection) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_MS / 1000)
        await ws.send("\n")


async def main(urls: list[str], tenant: str, first: int, count: int, out: str) -> None:
    rec, gate = Recorder(count), asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [
        asyncio.create_task(client(urls[i % len(urls)], tenant, f"u{i}", gate, rec))
        for i in range(first, first + count)
    ]
    ready = asyncio.create_task(rec.all_subscribed.wait())
    await asyncio.wait([ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        if task.done():
            task.result()  # a client that ended before the benchmark: raise its error
    # 500 connections are a lot of objects for the cyclic GC to walk: a full collection in a
    # load process would show up as server latency. Freeze them out of its reach.
    gc.freeze()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    arrays = {str(phase): np.array(values) for phase, values in rec.latencies.items()}
    np.savez(out, allow_pickle=False, **arrays)
    print("done", flush=True)
    os._exit(0)  # skip hundreds of closing handshakes; the server sees the sockets close


if __name__ == "__main__":
    urls, tenant, first, count, out = sys.argv[1:6]
    asyncio.run(main(urls.split(","), tenant, int(first), int(count), out))
