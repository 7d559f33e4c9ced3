"""Push destinations, who may subscribe, events; the hub's routing and drop policy."""

from __future__ import annotations

import asyncio

import pytest

from annostack.apps.push.hub import Hub, Outbox
from annostack.domain.push import (
    Destination,
    Forbidden,
    LockChanged,
    Scope,
    Subscriber,
    check_may_subscribe,
)
from annostack.domain.stomp import FrameParser
from annostack.services.tenancy import SessionTokens

ALICE = Subscriber(tenant="acme", user="alice", teams=frozenset({"red"}))
SERVICE = Subscriber(tenant="acme", user=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/topic/tenant.acme.user.alice", Destination.user("acme", "alice")),
        ("/topic/tenant.acme.user.a.b@c", Destination.user("acme", "a.b@c")),
        ("/topic/tenant.acme.team.red", Destination.team("acme", "red")),
        ("/topic/tenant.acme.global", Destination.everyone("acme")),
    ],
)
def test_destinations_round_trip(text: str, expected: Destination) -> None:
    assert Destination.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "/queue/x",
        "/topic/tenant.acme",
        "/topic/tenant.acme.user",  # no id
        "/topic/tenant.acme.global.x",  # global has no id
        "/topic/tenant.acme.admins.x",
        "/topic/tenant..global",
    ],
)
def test_unknown_destinations(text: str) -> None:
    with pytest.raises(Forbidden):
        Destination.parse(text)


@pytest.mark.parametrize(
    "destination",
    [
        Destination.user("acme", "alice"),
        Destination.team("acme", "red"),
        Destination.everyone("acme"),
    ],
)
def test_a_user_may_subscribe_to_its_own(destination: Destination) -> None:
    check_may_subscribe(ALICE, destination)


@pytest.mark.parametrize(
    "destination",
    [
        Destination.user("acme", "bob"),
        Destination.team("acme", "blue"),
        Destination.user("other", "alice"),  # same user id, another tenant
        Destination.everyone("other"),
    ],
)
def test_a_user_may_not_subscribe_to_others(destination: Destination) -> None:
    with pytest.raises(Forbidden):
        check_may_subscribe(ALICE, destination)


def test_an_api_token_gets_only_the_global_destination() -> None:
    check_may_subscribe(SERVICE, Destination.everyone("acme"))
    with pytest.raises(Forbidden):
        check_may_subscribe(SERVICE, Destination(tenant="acme", scope=Scope.USER, id=""))


def test_events_are_camel_case_json() -> None:
    body = LockChanged(type="lock.acquired", item_id=3, holder="user:alice").model_dump_json(
        by_alias=True
    )
    assert '"itemId":3' in body and '"type":"lock.acquired"' in body


def test_session_tokens_carry_teams_and_stay_compatible() -> None:
    tokens = SessionTokens("k", 60)
    assert tokens.verify(tokens.issue("acme", "alice", ["red", "blue"])).teams == {"red", "blue"}
    assert tokens.verify(tokens.issue("acme", "alice")).teams == frozenset()


def test_a_full_outbox_drops_the_newest_and_leaves_a_gap_in_message_ids() -> None:
    async def scenario() -> list[str]:
        hub = Hub()
        slow, fast = Outbox(capacity=2), Outbox(capacity=10)
        await hub.subscribe(slow, "/d", "s")
        await hub.subscribe(fast, "/d", "f")
        for n in range(4):
            hub.deliver("/d", b"%d" % n)
        assert slow.queue.qsize() == 2
        assert fast.queue.qsize() == 4
        slow.queue.get_nowait()  # the client catches up by one
        hub.deliver("/d", b"4")
        frames = [slow.queue.get_nowait() or "" for _ in range(2)]
        return [FrameParser().feed(f.encode())[0].header("message-id") for f in frames]

    # 1 was sent and read; 2 queued; 3 and 4 dropped (queue full), then 5 fits: the gap shows.
    assert asyncio.run(scenario()) == ["2", "5"]


def test_close_puts_the_last_frame_before_anything_queued() -> None:
    async def scenario() -> list[str | None]:
        outbox = Outbox(capacity=5)
        outbox.offer(b"MESSAGE")
        outbox.close(b"ERROR")
        return [outbox.queue.get_nowait(), outbox.queue.get_nowait()]

    assert asyncio.run(scenario()) == ["ERROR", None]


class FakeRelay:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def watch(self, destination: str) -> None:
        self.calls.append(f"watch {destination}")

    async def unwatch(self, destination: str) -> None:
        self.calls.append(f"unwatch {destination}")


def test_the_relay_is_told_when_a_destination_gains_and_loses_its_last_subscriber() -> None:
    async def scenario() -> list[str]:
        relay = FakeRelay()
        hub = Hub(relay)
        first = await hub.subscribe(Outbox(5), "/d", "1")
        second = await hub.subscribe(Outbox(5), "/d", "2")
        hub.unsubscribe(first)
        hub.unsubscribe(second)
        await asyncio.gather(*hub.unwatching)
        return relay.calls

    # Every SUBSCRIBE waits for the relay (it returns at once when already confirmed).
    assert asyncio.run(scenario()) == ["watch /d", "watch /d", "unwatch /d"]
