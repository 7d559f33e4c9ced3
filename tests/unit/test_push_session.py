"""The STOMP session state machine, without a socket: what each client frame leads to."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from annostack.apps.push.hub import Hub, Outbox
from annostack.apps.push.session import SessionClosed, SessionLimits, StompSession
from annostack.domain.push import Subscriber
from annostack.domain.stomp import Frame, FrameParser
from annostack.services.tenancy import Unauthenticated

ALICE = Subscriber(tenant="acme", user="alice", teams=frozenset({"red"}))
MINE = "/topic/tenant.acme.user.alice"


async def _authenticate(token: str) -> Subscriber:
    if token != "good":
        raise Unauthenticated("invalid token")
    return ALICE


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


def _sent(outbox: Outbox) -> list[Frame]:
    frames = []
    while not outbox.queue.empty():
        text = outbox.queue.get_nowait()
        if text is not None:
            frames.extend(FrameParser().feed(text.encode()))
    return frames


def _session() -> StompSession:
    limits = SessionLimits(heartbeat_ms=10_000, max_subscriptions=2)
    return StompSession(Hub(), Outbox(capacity=10), _authenticate, limits)


CONNECT = Frame("CONNECT", {"accept-version": "1.1,1.2", "passcode": "good"})


def test_connect_subscribe_receive_unsubscribe_disconnect() -> None:
    async def scenario() -> None:
        session = _session()
        await session.handle(Frame("STOMP", {**CONNECT.headers, "heart-beat": "5000,20000"}))
        [connected] = _sent(session.outbox)
        assert connected.headers["version"] == "1.2"
        assert connected.headers["heart-beat"] == "20000,10000"

        await session.handle(Frame("SUBSCRIBE", {"id": "s", "destination": MINE, "receipt": "1"}))
        assert _sent(session.outbox) == [Frame("RECEIPT", {"receipt-id": "1"})]
        session.hub.deliver(MINE, b"{}")
        [message] = _sent(session.outbox)
        assert (message.command, message.headers["subscription"]) == ("MESSAGE", "s")

        await session.handle(Frame("UNSUBSCRIBE", {"id": "s"}))
        session.hub.deliver(MINE, b"{}")
        assert _sent(session.outbox) == []
        assert not session.hub.routes

        with pytest.raises(SessionClosed) as closed:
            await session.handle(Frame("DISCONNECT", {"receipt": "bye"}))
        assert closed.value.frame == Frame("RECEIPT", {"receipt-id": "bye"})

    _run(scenario())


@pytest.mark.parametrize(
    ("frame", "reason", "message"),
    [
        (Frame("SUBSCRIBE", {"id": "s", "destination": MINE}), "error", "CONNECT first"),
        (Frame("CONNECT", {"accept-version": "1.2", "passcode": "bad"}), "auth", "authentication"),
        (Frame("CONNECT", {"accept-version": "1.0,1.1", "passcode": "good"}), "error", "1.2"),
    ],
)
def test_what_ends_a_session_before_connected(frame: Frame, reason: str, message: str) -> None:
    async def scenario() -> None:
        session = _session()
        with pytest.raises(SessionClosed) as closed:
            await session.handle(frame)
        assert closed.value.reason == reason
        assert closed.value.frame is not None and closed.value.frame.command == "ERROR"
        assert message in closed.value.frame.headers["message"]
        assert session.subscriber is None and not session.hub.routes

    _run(scenario())


@pytest.mark.parametrize(
    "frame",
    [
        Frame("SEND", {"destination": MINE}, b"hi"),
        Frame("ACK", {"id": "1"}),
        Frame("BEGIN", {"transaction": "t"}),
        Frame("CONNECT", CONNECT.headers),
        Frame("SUBSCRIBE", {"id": "s", "destination": MINE, "ack": "client"}),
        Frame("SUBSCRIBE", {"destination": MINE}),
        Frame("UNSUBSCRIBE", {"id": "never"}),
        Frame("SUBSCRIBE", {"id": "x", "destination": "/topic/tenant.acme.user.bob"}),
    ],
)
def test_what_ends_a_connected_session(frame: Frame) -> None:
    async def scenario() -> None:
        session = _session()
        await session.handle(CONNECT)
        with pytest.raises(SessionClosed) as closed:
            await session.handle(frame)
        assert closed.value.frame is not None and closed.value.frame.command == "ERROR"

    _run(scenario())


def test_subscriptions_are_limited_and_released_on_close() -> None:
    async def scenario() -> None:
        session = _session()
        await session.handle(CONNECT)
        await session.handle(Frame("SUBSCRIBE", {"id": "1", "destination": MINE}))
        await session.handle(Frame("SUBSCRIBE", {"id": "2", "destination": MINE}))
        with pytest.raises(SessionClosed, match="error"):
            await session.handle(Frame("SUBSCRIBE", {"id": "3", "destination": MINE}))
        session.close()
        assert not session.hub.routes

    _run(scenario())
