"""`GET /v1/push` (WebSocket): STOMP 1.2 for browsers and services, on every API replica.

Until CONNECT has authenticated the client, a frame may be at most `push_max_connect_bytes`
(a few KiB; after, `push_max_frame_bytes`), and uvicorn assembles no WebSocket message much
larger than that (`ApiSettings.ws_max_size`): an unauthenticated socket costs kilobytes.

Each connection runs two tasks: a reader that parses frames and drives the `StompSession`,
and a writer that drains the connection's `Outbox` and sends heart-beats when idle. They
end together: the reader on disconnect, a fatal frame or heart-beat silence (it then closes
the outbox, so the writer sends the last frame and stops); the writer on a send failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from annostack.apps.deps import authenticate, client_address
from annostack.apps.push import metrics
from annostack.apps.push.hub import Outbox
from annostack.apps.push.session import SessionClosed, SessionLimits, StompSession, error_frame
from annostack.apps.state import AppState
from annostack.domain.errors import AnnostackError, RateLimited
from annostack.domain.push import Subscriber
from annostack.domain.stomp import (
    HEARTBEAT,
    FrameError,
    FrameParser,
    Limits,
    encode,
)

router = APIRouter(tags=["push"])
# STOMP-over-WebSocket subprotocols, best first; only 1.2 is spoken, but clients that offer
# the older ones too (stompjs offers all three) are told it is 1.2 in CONNECTED.
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
CLOSE_NORMAL = 1000
NO_HEARTBEATS = 24 * 3600.0  # a client that opted out of heart-beats: TCP decides
# uvloop's timers (libuv) count whole milliseconds and may fire up to 1 ms early.
TIMER_SLACK = 0.01


def _subprotocol(websocket: WebSocket) -> str | None:
    offered = websocket.scope.get("subprotocols") or []
    return next((p for p in SUBPROTOCOLS if p in offered), None)


@router.websocket("/v1/push")
async def push(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.annostack
    await websocket.accept(subprotocol=_subprotocol(websocket))
    metrics.CONNECTIONS.inc()
    try:
        await Connection(websocket, state).serve()
    finally:
        metrics.CONNECTIONS.dec()


class Connection:
    def __init__(self, websocket: WebSocket, state: AppState) -> None:
        api = state.api
        self.websocket = websocket
        self.state = state
        self.outbox = Outbox(api.push_queue_frames)
        self.parser = FrameParser(Limits(max_frame_bytes=api.push_max_connect_bytes))
        limits = SessionLimits(api.push_heartbeat_ms, api.push_max_subscriptions)
        self.session = StompSession(state.hub, self.outbox, self._authenticate, limits)
        self.sent_at = time.monotonic()
        self.expires: float | None = None  # monotonic time the client's credentials expire
        self.token = ""
        self.recheck_at: float | None = None  # monotonic time an API token is verified again

    async def _authenticate(self, token: str) -> Subscriber:
        _, principal = await authenticate(self.state, token, client_address(self.websocket))
        self.token = token
        # A CONNECT counts against the tenant's request rate, as a REST call does: a client
        # stuck in a reconnect loop must not cost more than one hammering the REST API.
        delay = await self.state.coordination.within_rate(
            principal.tenant, self.state.api.rate_limit_per_second
        )
        if delay is not None:
            raise RateLimited(delay)
        user = principal.subject if principal.kind == "session" else None
        return Subscriber(principal.tenant, user, principal.teams, principal.expires_at)

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            reason = await self._read()
            metrics.CLOSED.labels(reason).inc()
            await asyncio.wait_for(writer, timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
        finally:
            self.session.close()
            writer.cancel()
            with contextlib.suppress(Exception):
                await self.websocket.close(CLOSE_NORMAL)

    def _read_timeout(self) -> float:
        """Silence allowed before the client counts as gone, or until its session expires."""
        receive_ms = self.session.heartbeats.receive_ms
        if self.session.subscriber is None:
            receive_ms = self.state.api.push_heartbeat_ms  # time allowed to send CONNECT
        silence = receive_ms * self.state.api.push_heartbeat_grace / 1000 or NO_HEARTBEATS
        deadlines = [d for d in (self.expires, self.recheck_at) if d is not None]
        if deadlines:
            return max(0.0, min(silence, min(deadlines) - time.monotonic()))
        return silence

    def _connected(self) -> None:
        """Just after CONNECT: start heart-beating, and note when the credentials expire."""
        self.parser.limits = Limits(max_frame_bytes=self.state.api.push_max_frame_bytes)
        self._heartbeat()
        subscriber = self.session.subscriber
        if subscriber is not None and subscriber.expires_at is not None:
            # On the monotonic clock, like asyncio's timers: the wall clock may be slewed.
            self.expires = time.monotonic() + subscriber.expires_at - time.time()
        elif subscriber is not None:
            # An API token does not expire, but it can be revoked: check it again now and then.
            self.recheck_at = time.monotonic() + self.state.api.push_token_recheck_seconds

    async def _still_valid(self) -> bool:
        """True if the read timed out only for an API token's re-check, and it passed."""
        if self.recheck_at is None or time.monotonic() < self.recheck_at - TIMER_SLACK:
            return False
        try:
            await authenticate(self.state, self.token, client_address(self.websocket))
        except AnnostackError as error:
            frame = error_frame(f"token no longer valid ({error}); reconnect with a valid one")
            raise SessionClosed("revoked", frame) from error
        self.recheck_at = time.monotonic() + self.state.api.push_token_recheck_seconds
        return True

    async def _read(self) -> str:
        """Read and handle frames until the session ends; return why it ended."""
        try:
            while True:
                try:
                    receiving = self.websocket.receive()
                    message = await asyncio.wait_for(receiving, self._read_timeout())
                except TimeoutError:
                    if await self._still_valid():
                        continue
                    raise
                if message["type"] == "websocket.disconnect":
                    self.outbox.close()
                    return "client"
                data = message.get("bytes") or message.get("text", "").encode()
                for frame in self.parser.feed(data):
                    connected = self.session.subscriber is not None
                    await self.session.handle(frame)
                    if not connected:  # that was the CONNECT
                        self._connected()
        except SessionClosed as closed:
            self.outbox.close(encode(closed.frame) if closed.frame else None)
            return closed.reason
        except FrameError as error:
            before = "" if self.session.subscriber else " (before CONNECT)"
            self.outbox.close(encode(error_frame(f"malformed frame: {error}{before}")))
            return "error"
        except TimeoutError:
            if self.expires is not None and time.monotonic() >= self.expires - TIMER_SLACK:
                # A session token's lifetime bounds the connection too.
                self.outbox.close(encode(error_frame("session expired; reconnect")))
                return "expired"
            self.outbox.close(encode(error_frame("no heart-beat from the client in time")))
            return "heartbeat"
        except WebSocketDisconnect:
            self.outbox.close()
            return "client"

    async def _write(self) -> None:
        queue = self.outbox.queue
        while (frame := await queue.get()) is not None:
            try:
                await self.websocket.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            self.sent_at = time.monotonic()

    def _heartbeat(self) -> None:
        """Queue an EOL if nothing went out for a whole interval; check again one later.

        A timer per connection rather than a timeout on every queue read: wrapping each read
        in `wait_for` would cost a task per delivered message.
        """
        interval = self.session.heartbeats.send_ms / 1000
        if not interval or self.outbox.closed:
            return
        idle = time.monotonic() - self.sent_at
        if idle >= interval and self.outbox.queue.empty():
            self.outbox.control(HEARTBEAT)
            idle = 0.0
        asyncio.get_running_loop().call_later(interval - idle, self._heartbeat)
