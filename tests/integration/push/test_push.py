"""Push end to end: real STOMP clients on two API replicas that share only the real Redis."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
import redis
import sqlalchemy as sa
from PIL import Image
from websockets.exceptions import ConnectionClosed

from annostack.adapters.push import PushPublisher
from annostack.adapters.tenant_tables import api_tokens
from annostack.apps.main import create_app
from annostack.apps.settings import ApiSettings
from annostack.apps.testing import serve
from annostack.domain.push import Destination, TaskAssignmentChanged, TeamMembershipChanged
from annostack.services.tenancy import SessionTokens, TenantDirectory, create_api_token
from annostack.settings import Settings
from annostack.workers.runtime import Worker
from annostack.workers.settings import WorkerSettings
from tests.integration.push.clients import TIMEOUT, StompJs, StompPy, connect_frame, raw
from tests.integration.push.conftest import HEARTBEAT_MS, Replica
from tests.support import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stomp_py(replicas: list[Replica]) -> Iterator[StompPy]:
    client = StompPy(replicas[1].ws_url)
    yield client
    client.close()


def _locked_item(replica: Replica, token: str) -> int:
    """A new item, locked through replica `replica`'s REST API (which publishes the event)."""
    auth = {"Authorization": f"Bearer {token}"}
    http: httpx.Client = replica.http
    dataset = http.post(
        "/v1/datasets",
        headers=auth,
        json={"name": f"d{time.monotonic_ns()}", "displayName": "d", "dataType": "IMAGE"},
    )
    assert dataset.status_code == 201, dataset.text
    upload = http.post(
        f"/v1/datasets/{dataset.json()['id']}/uploads",
        headers=auth,
        json={"name": "a.jpg", "size": 10, "contentType": "image/jpeg"},
    )
    assert upload.status_code == 201, upload.text
    item_id = int(upload.json()["itemId"])
    assert http.post(f"/v1/items/{item_id}/lock", headers=auth).status_code == 200
    return item_id


def test_stomp_py_on_replica_b_gets_what_replica_a_publishes(
    replicas: list[Replica], stomp_py: StompPy, alice: str, tenant: str, publisher: PushPublisher
) -> None:
    stomp_py.connect(alice)
    stomp_py.subscribe(f"/topic/tenant.{tenant}.global", "everyone")
    stomp_py.subscribe(f"/topic/tenant.{tenant}.user.alice", "me")
    stomp_py.subscribe(f"/topic/tenant.{tenant}.team.red", "team")

    item_id = _locked_item(replicas[0], alice)  # REST on replica A
    destination, event = stomp_py.next_message()
    assert destination == f"/topic/tenant.{tenant}.global"
    assert event["type"] == "lock.acquired"
    assert (event["itemId"], event["holder"]) == (item_id, "user:alice")

    # The publisher API, as a worker or the operator uses it (no replica involved).
    publisher.publish(
        Destination.user(tenant, "alice"), TaskAssignmentChanged(task_id="t1", assignee="alice")
    )
    publisher.publish(
        Destination.team(tenant, "red"),
        TeamMembershipChanged(team_id="red", user_id="bob", change="added"),
    )
    got = dict(stomp_py.next_message() for _ in range(2))
    assert got[f"/topic/tenant.{tenant}.user.alice"]["type"] == "task.assignment"
    assert got[f"/topic/tenant.{tenant}.team.red"]["userId"] == "bob"


@pytest.mark.parametrize("forbidden", ["user.bob", "team.blue", "nope"])
def test_stomp_py_cannot_subscribe_to_someone_elses_destination(
    stomp_py: StompPy, alice: str, tenant: str, forbidden: str
) -> None:
    stomp_py.connect(alice)
    stomp_py.connection.subscribe(f"/topic/tenant.{tenant}.{forbidden}", "x")
    kind, frame = stomp_py.next()
    assert kind == "ERROR"
    assert "not allowed" in frame.headers["message"] or "unknown" in frame.headers["message"]
    assert stomp_py.next()[0] == "DISCONNECTED"


def test_a_user_cannot_subscribe_to_another_tenants_destination(
    stomp_py: StompPy, sessions: SessionTokens, tenant: str
) -> None:
    # Same user id and team name, other tenant: the token's tenant decides.
    stomp_py.connect(sessions.issue(tenant, "alice", teams=["red"]))
    stomp_py.connection.subscribe("/topic/tenant.other.user.alice", "x")
    assert stomp_py.next()[0] == "ERROR"
    assert stomp_py.next()[0] == "DISCONNECTED"


def test_stompjs_on_replica_b_gets_replica_a_events_and_is_refused_others(
    replicas: list[Replica], js_client: Path, alice: str, tenant: str, publisher: PushPublisher
) -> None:
    mine, everyone = f"/topic/tenant.{tenant}.user.alice", f"/topic/tenant.{tenant}.global"
    client = StompJs(js_client, replicas[1].ws_url, alice, mine, everyone)
    try:
        assert client.next() == {"event": "connected", "version": "1.2"}
        assert {client.next()["event"], client.next()["event"]} == {"receipt"}

        item_id = _locked_item(replicas[0], alice)
        message = client.next()
        assert message["destination"] == everyone
        assert message["body"]["itemId"] == item_id
        assert message["messageId"] == "1"

        publisher.publish(
            Destination.user(tenant, "alice"), TaskAssignmentChanged(task_id="t2", assignee="alice")
        )
        assert client.next()["body"]["taskId"] == "t2"

        client.subscribe(f"/topic/tenant.{tenant}.user.bob")
        error = client.next()
        assert error["event"] == "error"
        assert "not allowed" in error["message"]
        assert client.next()["event"] == "closed"
    finally:
        client.close()


def test_failed_authentication_gets_error_and_no_subscription(
    replicas: list[Replica], js_client: Path, tenant: str, sessions: SessionTokens
) -> None:
    forged = SessionTokens("not-the-platform-key", 60).issue(tenant, "alice")
    client = StompJs(js_client, replicas[0].ws_url, forged, f"/topic/tenant.{tenant}.global")
    try:
        error = client.next()
        assert error["event"] == "error"
        assert "authentication failed" in error["message"]
        assert client.next()["event"] == "closed"
    finally:
        client.close()
    # An API token is refused on the user gateway, the same as for REST.
    with raw(replicas[0].ws_url) as socket:
        socket.send(connect_frame("ast_x_y") + "SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\x00")
        assert str(socket.recv(TIMEOUT)).startswith("ERROR\n")
        with pytest.raises(ConnectionClosed):
            socket.recv(TIMEOUT)


def test_a_silent_client_is_dropped_after_the_heartbeat_timeout(
    replicas: list[Replica], alice: str
) -> None:
    with raw(replicas[0].ws_url) as socket:
        # It promises a heart-beat every 100 ms (the server asks for HEARTBEAT_MS), then says
        # nothing more.
        socket.send(connect_frame(alice, heartbeat="100,0"))
        connected = str(socket.recv(TIMEOUT))
        assert f"heart-beat:0,{HEARTBEAT_MS}" in connected
        started = time.monotonic()
        error = str(socket.recv(TIMEOUT))
        assert error.startswith("ERROR\n") and "heart-beat" in error
        with pytest.raises(ConnectionClosed):
            socket.recv(TIMEOUT)
        waited = time.monotonic() - started
    assert HEARTBEAT_MS / 1000 <= waited < 4 * HEARTBEAT_MS / 1000


def test_a_client_that_heartbeats_stays_connected(
    replicas: list[Replica], alice: str, tenant: str, publisher: PushPublisher
) -> None:
    client = StompPy(replicas[0].ws_url, heartbeats=(HEARTBEAT_MS // 2, HEARTBEAT_MS))
    try:
        client.connect(alice)
        client.subscribe(f"/topic/tenant.{tenant}.user.alice", "me")
        time.sleep(4 * HEARTBEAT_MS / 1000)  # on purpose: outlive the timeout, heart-beating
        publisher.publish(
            Destination.user(tenant, "alice"), TaskAssignmentChanged(task_id="t3", assignee=None)
        )
        assert client.next_message()[1]["taskId"] == "t3"
    finally:
        client.close()


@pytest.mark.parametrize(
    "frame",
    [
        "SUBSCRIBE\nid:0\ndestination:/topic/x\\t\n\n\x00",  # undefined escape
        "SUBSCRIBE\nid 0\n\n\x00",  # header without a colon
        "HELLO\n\n\x00",  # no such command
        "SEND\ncontent-length:1\n\nxy\x00",  # body longer than announced
        "SEND\n\n" + "x" * 70_000 + "\x00",  # over the 64 KiB frame limit
    ],
)
def test_a_malformed_frame_gets_error_and_close(
    replicas: list[Replica], alice: str, frame: str
) -> None:
    with raw(replicas[1].ws_url) as socket:
        socket.send(connect_frame(alice))
        assert str(socket.recv(TIMEOUT)).startswith("CONNECTED\n")
        socket.send(frame)
        error = str(socket.recv(TIMEOUT))
        assert error.startswith("ERROR\nmessage:malformed frame")
        with pytest.raises(ConnectionClosed):
            socket.recv(TIMEOUT)


def test_upload_completion_and_worker_progress_reach_clients(
    replicas: list[Replica],
    stomp_py: StompPy,
    alice: str,
    tenant: str,
    directory: TenantDirectory,
) -> None:
    stomp_py.connect(alice)
    stomp_py.subscribe(f"/topic/tenant.{tenant}.global", "everyone")
    auth = {"Authorization": f"Bearer {alice}"}
    http = replicas[0].http
    dataset = http.post(
        "/v1/datasets",
        headers=auth,
        json={"name": f"w{time.monotonic_ns()}", "displayName": "w", "dataType": "IMAGE"},
    ).json()
    photo = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(photo, "JPEG")
    body = photo.getvalue()
    ticket = http.post(
        f"/v1/datasets/{dataset['id']}/uploads",
        headers=auth,
        json={"name": "p.jpg", "size": len(body), "contentType": "image/jpeg"},
    ).json()
    assert httpx.put(ticket["url"], content=body).status_code == 200
    assert http.post(f"/v1/items/{ticket['itemId']}/complete", headers=auth).status_code == 200
    _, uploaded = stomp_py.next_message()
    assert uploaded == uploaded | {"type": "upload.progress", "itemId": ticket["itemId"]}

    # A real worker consumes the queued message and reports through the push publisher.
    worker = Worker(directory.get(tenant).connection, WorkerSettings(topics=["thumbnails"]))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        _, processed = stomp_py.next_message(timeout=60)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert processed["type"] == "processing.progress"
    assert (processed["itemId"], processed["topic"], processed["result"]) == (
        ticket["itemId"],
        "thumbnails",
        "ok",
    )


def test_the_server_heartbeats_an_idle_connection(replicas: list[Replica], alice: str) -> None:
    with raw(replicas[1].ws_url) as socket:
        socket.send(connect_frame(alice, heartbeat="0,100"))  # wants one every 100 ms
        assert f"heart-beat:{HEARTBEAT_MS},0" in str(socket.recv(TIMEOUT))  # offered: 500 ms
        started = time.monotonic()
        assert [socket.recv(TIMEOUT) for _ in range(3)] == ["\n"] * 3
        elapsed = time.monotonic() - started
    assert 2.5 * HEARTBEAT_MS / 1000 <= elapsed < 6 * HEARTBEAT_MS / 1000


def test_a_connection_ends_when_its_session_token_expires(
    replicas: list[Replica], sessions: SessionTokens, tenant: str
) -> None:
    # Signed as if (max age - 1.5 s) ago: valid at CONNECT, expired a moment later.
    signed_at = time.time() - sessions.max_age + 1.5
    with mock.patch("itsdangerous.timed.time.time", return_value=signed_at):
        token = sessions.issue(tenant, "alice")
    with raw(replicas[0].ws_url) as socket:
        socket.send(connect_frame(token))  # no heart-beats: only the expiry can end it
        assert str(socket.recv(TIMEOUT)).startswith("CONNECTED\n")
        error = str(socket.recv(TIMEOUT))
        assert error.startswith("ERROR\n") and "session expired" in error
        with pytest.raises(ConnectionClosed):
            socket.recv(TIMEOUT)


def test_the_relay_resubscribes_after_losing_redis(
    replicas: list[Replica],
    stomp_py: StompPy,
    alice: str,
    tenant: str,
    publisher: PushPublisher,
    redis_admin_url: str,
) -> None:
    stomp_py.connect(alice)
    stomp_py.subscribe(f"/topic/tenant.{tenant}.user.alice", "me")
    name = replicas[1].relay.client_name
    admin = redis.Redis.from_url(redis_admin_url)

    def relay_channels() -> int:
        """How many channels replica B's relay connection has subscribed (0: not connected)."""
        found = [c for c in admin.client_list(_type="pubsub") if c["name"] == name]
        return int(found[0]["sub"]) if found else 0

    try:
        assert relay_channels() >= 2  # the control channel and alice's
        [relay] = [c for c in admin.client_list(_type="pubsub") if c["name"] == name]
        admin.client_kill_filter(_id=relay["id"])  # only this connection, not anyone else's
        wait_for(lambda: relay_channels() >= 2, timeout=10, what="the relay resubscribed")
    finally:
        admin.close()
    event = TaskAssignmentChanged(task_id="after", assignee="alice")
    publisher.publish(Destination.user(tenant, "alice"), event)
    assert stomp_py.next_message()[1]["taskId"] == "after"


def test_connects_count_against_the_tenant_rate_limit(
    stack_settings: Settings, push_settings: ApiSettings, tenant: str, sessions: SessionTokens
) -> None:
    limited = push_settings.model_copy(update={"rate_limit_per_second": 2})
    token = sessions.issue(tenant, "alice")
    with serve(create_app(stack_settings, limited)) as http:
        url = str(http.base_url).replace("http://", "ws://").rstrip("/") + "/v1/push"
        replies = []
        for _ in range(6):  # well within one second: the third and later are over the limit
            with raw(url) as socket:
                socket.send(connect_frame(token))
                replies.append(str(socket.recv(TIMEOUT)))
    assert replies[0].startswith("CONNECTED\n")
    refused = [reply for reply in replies if reply.startswith("ERROR\n")]
    assert refused, "a reconnect loop is throttled like REST calls"
    assert all("rate limit exceeded; retry after" in reply for reply in refused)


def test_a_revoked_api_token_ends_its_push_connection(
    stack_settings: Settings, push_settings: ApiSettings, tenant: str, directory: TenantDirectory
) -> None:
    rechecking = push_settings.model_copy(
        update={"gateway": "open", "push_token_recheck_seconds": 0.5}
    )
    ctx = directory.get(tenant)
    name = f"push-{uuid.uuid4().hex[:6]}"
    token = create_api_token(ctx, name)
    with serve(create_app(stack_settings, rechecking)) as http:
        url = str(http.base_url).replace("http://", "ws://").rstrip("/") + "/v1/push"
        with raw(url) as socket:
            socket.send(connect_frame(token))
            assert str(socket.recv(TIMEOUT)).startswith("CONNECTED\n")
            time.sleep(1.2)  # two re-checks pass while the token is valid
            with ctx.engine.begin() as conn:
                revoke = api_tokens.update().where(api_tokens.c.name == name)
                conn.execute(revoke.values(revoked_at=sa.func.now()))
            error = str(socket.recv(TIMEOUT))
            assert error.startswith("ERROR\n") and "token no longer valid" in error
            with pytest.raises(ConnectionClosed):
                socket.recv(TIMEOUT)
