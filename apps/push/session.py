"""One client's STOMP session: what each frame it sends does (no socket here; see endpoint).

Supported: CONNECT/STOMP (STOMP 1.2 only, token in `passcode` or an `Authorization: Bearer`
header), SUBSCRIBE/UNSUBSCRIBE (ack mode `auto` only: delivery is at-most-once),
DISCONNECT, a RECEIPT for any frame that asks for one, heart-beats. Anything else — SEND,
transactions, ACK/NACK, a second CONNECT, a frame before CONNECT — is answered with ERROR and
the connection is closed, as the spec requires after an ERROR.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from annostack.apps.push import metrics
from annostack.apps.push.hub import Hub, Outbox, Subscription
from annostack.domain.errors import AnnostackError, RateLimited
from annostack.domain.push import Destination, Forbidden, Subscriber, check_may_subscribe
from annostack.domain.stomp import Frame, Heartbeats, encode, negotiate

Authenticator = Callable[[str], Awaitable[Subscriber]]
SERVER_NAME = "annostack"


class SessionClosed(Exception):
    """The session is over; `frame` (ERROR, or RECEIPT of a DISCONNECT) goes out last."""

    def __init__(self, reason: str, frame: Frame | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.frame = frame


def error_frame(message: str, cause: Frame | None = None) -> Frame:
    headers = {"message": message}
    if cause is not None and (receipt := cause.header("receipt")):
        headers["receipt-id"] = receipt
    return Frame("ERROR", headers, message.encode())


@dataclass(frozen=True)
class SessionLimits:
    heartbeat_ms: int
    max_subscriptions: int


@dataclass
class StompSession:
    hub: Hub
    outbox: Outbox
    authenticate: Authenticator
    limits: SessionLimits
    subscriber: Subscriber | None = None
    heartbeats: Heartbeats = field(default_factory=lambda: Heartbeats(0, 0))
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    async def handle(self, frame: Frame) -> None:
        """Act on one frame; raise SessionClosed when the connection must end."""
        metrics.FRAMES.labels("in", frame.command).inc()
        if self.subscriber is None:
            await self._connect(frame)
        elif frame.command == "SUBSCRIBE":
            await self._subscribe(frame)
        elif frame.command == "UNSUBSCRIBE":
            self._unsubscribe(frame)
        elif frame.command == "DISCONNECT":
            raise SessionClosed("client", self._receipt_for(frame))
        else:
            raise SessionClosed("error", error_frame(f"{frame.command} is not supported", frame))
        receipt = self._receipt_for(frame)
        if receipt is not None:
            self.send(receipt)

    def send(self, frame: Frame) -> None:
        metrics.FRAMES.labels("out", frame.command).inc()
        self.outbox.control(encode(frame))

    def close(self) -> None:
        for subscription in self.subscriptions.values():
            self.hub.unsubscribe(subscription)
        self.subscriptions.clear()

    async def _connect(self, frame: Frame) -> None:
        if frame.command not in ("CONNECT", "STOMP"):
            raise SessionClosed("error", error_frame("CONNECT first", frame))
        if "1.2" not in frame.header("accept-version", "1.0").split(","):
            raise SessionClosed("error", error_frame("only STOMP 1.2 is supported", frame))
        try:
            subscriber = await self.authenticate(_token(frame))
        except RateLimited as error:
            raise SessionClosed("rate_limited", error_frame(str(error))) from error
        except AnnostackError as error:
            raise SessionClosed("auth", error_frame(f"authentication failed: {error}")) from error
        # Negotiated before the session counts as connected: a bad header is an ERROR too.
        beat = self.limits.heartbeat_ms
        self.heartbeats = negotiate(frame.header("heart-beat"), beat, beat)
        self.subscriber = subscriber
        headers = {"version": "1.2", "heart-beat": self.heartbeats.header}
        headers["server"] = SERVER_NAME
        self.send(Frame("CONNECTED", headers))

    async def _subscribe(self, frame: Frame) -> None:
        assert self.subscriber is not None
        sub_id, target = frame.header("id"), frame.header("destination")
        if not sub_id or not target:
            raise SessionClosed("error", error_frame("SUBSCRIBE needs id and destination", frame))
        if sub_id in self.subscriptions:
            raise SessionClosed("error", error_frame(f"subscription {sub_id} exists", frame))
        if frame.header("ack", "auto") != "auto":
            raise SessionClosed("error", error_frame("only ack:auto (at-most-once)", frame))
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise SessionClosed("error", error_frame("too many subscriptions", frame))
        try:
            destination = Destination.parse(target)
            check_may_subscribe(self.subscriber, destination)
        except Forbidden as error:
            raise SessionClosed("forbidden", error_frame(str(error), frame)) from error
        # Route on the canonical spelling, the one publishers produce.
        self.subscriptions[sub_id] = await self.hub.subscribe(self.outbox, str(destination), sub_id)

    def _unsubscribe(self, frame: Frame) -> None:
        subscription = self.subscriptions.pop(frame.header("id"), None)
        if subscription is None:
            raise SessionClosed("error", error_frame("no such subscription", frame))
        self.hub.unsubscribe(subscription)

    @staticmethod
    def _receipt_for(frame: Frame) -> Frame | None:
        receipt = frame.header("receipt")
        return Frame("RECEIPT", {"receipt-id": receipt}) if receipt else None


def _token(frame: Frame) -> str:
    authorization = frame.header("Authorization") or frame.header("authorization")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip()
    return frame.header("passcode")
