"""STOMP 1.2 frames: parsing, encoding, escaping, content-length, heart-beats, limits."""

from __future__ import annotations

import pytest

from annostack.domain.stomp import (
    Frame,
    FrameError,
    FrameParser,
    FrameTooLarge,
    Heartbeats,
    Limits,
    MessageTemplate,
    encode,
    escape,
    negotiate,
    unescape,
)


def parse_one(data: bytes, limits: Limits | None = None) -> Frame:
    frames = FrameParser(limits).feed(data)
    assert len(frames) == 1
    return frames[0]


def test_a_simple_frame() -> None:
    frame = parse_one(b"SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\x00")
    assert frame == Frame("SUBSCRIBE", {"id": "0", "destination": "/topic/x"}, b"")


def test_crlf_line_ends_are_accepted() -> None:
    frame = parse_one(b"SUBSCRIBE\r\nid:0\r\ndestination:/d\r\n\r\nhi\x00")
    assert frame.headers == {"id": "0", "destination": "/d"}
    assert frame.body == b"hi"


def test_header_escapes_are_decoded() -> None:
    frame = parse_one(b"SEND\na\\cb:x\\\\y\\nz\\r\n\n\x00")
    assert frame.headers == {"a:b": "x\\y\nz\r"}


def test_connect_headers_are_not_unescaped() -> None:
    frame = parse_one(b"CONNECT\npasscode:a\\cb\nx:1:2\n\n\x00")
    assert frame.headers == {"passcode": "a\\cb", "x": "1:2"}


@pytest.mark.parametrize("bad", [b"\\t", b"\\", b"\\x"])
def test_undefined_escapes_are_fatal(bad: bytes) -> None:
    with pytest.raises(FrameError, match="escape"):
        FrameParser().feed(b"SEND\nh:" + bad + b"\n\n\x00")


def test_escape_round_trip() -> None:
    value = "a:b\\c\nd\re"
    assert unescape(escape(value)) == value
    assert escape(value) == "a\\cb\\\\c\\nd\\re"


def test_the_first_of_repeated_headers_wins() -> None:
    assert parse_one(b"SEND\nfoo:1\nfoo:2\n\n\x00").headers == {"foo": "1"}


def test_content_length_body_may_contain_nul() -> None:
    frame = parse_one(b"SEND\ncontent-length:5\n\na\x00b\x00c\x00")
    assert frame.body == b"a\x00b\x00c"


def test_content_length_without_nul_where_due_is_malformed() -> None:
    with pytest.raises(FrameError, match="content-length"):
        FrameParser().feed(b"SEND\ncontent-length:1\n\nab\x00")


def test_content_length_must_be_a_number() -> None:
    with pytest.raises(FrameError):
        FrameParser().feed(b"SEND\ncontent-length:-1\n\n\x00")


def test_frames_split_across_messages_and_several_in_one() -> None:
    parser = FrameParser()
    data = b"\n\nSUBSCRIBE\nid:1\ndestination:/a\n\n\x00\r\nUNSUBSCRIBE\nid:1\n\n\x00\n"
    frames = [frame for byte in data for frame in parser.feed(bytes([byte]))]
    assert [f.command for f in frames] == ["SUBSCRIBE", "UNSUBSCRIBE"]
    assert parser.heartbeats == 4
    assert not parser.buffer


def test_heartbeats_alone_make_no_frames() -> None:
    parser = FrameParser()
    assert parser.feed(b"\n\r\n\n") == []
    assert parser.heartbeats == 3


@pytest.mark.parametrize(
    "data",
    [
        b"HELLO\n\n\x00",  # unknown command
        b"SEND\nno-colon\n\n\x00",  # header line without a colon
        b"SEND\n:empty-name\n\n\x00",
        b"SEND\nh:\xff\n\n\x00",  # not UTF-8
    ],
)
def test_malformed_frames_are_rejected(data: bytes) -> None:
    with pytest.raises(FrameError):
        FrameParser().feed(data)


def test_a_frame_over_the_limit_is_rejected_before_it_is_whole() -> None:
    parser = FrameParser(Limits(max_frame_bytes=100))
    with pytest.raises(FrameTooLarge):
        parser.feed(b"SEND\n\n" + b"x" * 200)  # no NUL yet: it would only grow


def test_an_announced_oversize_body_is_rejected_at_once() -> None:
    with pytest.raises(FrameTooLarge):
        FrameParser(Limits(max_frame_bytes=100)).feed(b"SEND\ncontent-length:1000\n\n")


def test_header_count_and_size_limits() -> None:
    many = b"".join(b"h%d:v\n" % i for i in range(5))
    with pytest.raises(FrameTooLarge):
        FrameParser(Limits(max_headers=4)).feed(b"SEND\n" + many + b"\n\x00")
    with pytest.raises(FrameTooLarge):
        FrameParser(Limits(max_header_bytes=10)).feed(b"SEND\nh:" + b"v" * 20 + b"\n\n\x00")


def test_encode_escapes_and_adds_content_length() -> None:
    data = encode(Frame("MESSAGE", {"destination": "/a:b"}, b"x\x00y"))
    assert data == b"MESSAGE\ndestination:/a\\cb\ncontent-length:3\n\nx\x00y\x00"
    assert parse_one(data) == Frame(
        "MESSAGE", {"destination": "/a:b", "content-length": "3"}, b"x\x00y"
    )


def test_connected_is_not_escaped() -> None:
    assert encode(Frame("CONNECTED", {"server": "a:b"})) == b"CONNECTED\nserver:a:b\n\n\x00"


def test_message_template_renders_what_encode_would() -> None:
    template = MessageTemplate("/topic/t:1", "sub\n0", "application/json")
    rendered = template.render(7, b'{"a":1}')
    frame = parse_one(rendered)
    assert frame.command == "MESSAGE"
    assert frame.headers == {
        "destination": "/topic/t:1",
        "subscription": "sub\n0",
        "content-type": "application/json",
        "message-id": "7",
        "content-length": "7",
    }
    assert frame.body == b'{"a":1}'


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("", Heartbeats(0, 0)),  # no header: none either way
        ("0,0", Heartbeats(0, 0)),
        ("1000,0", Heartbeats(0, 10_000)),  # client sends, wants none
        ("0,500", Heartbeats(10_000, 0)),  # client wants, never sends
        ("30000,20000", Heartbeats(20_000, 30_000)),  # the larger of each pair
    ],
)
def test_heartbeat_negotiation(client: str, expected: Heartbeats) -> None:
    assert negotiate(client, 10_000, 10_000) == expected


@pytest.mark.parametrize("bad", ["1000", "a,b", "1,-1"])
def test_a_bad_heartbeat_header_is_an_error(bad: str) -> None:
    with pytest.raises(FrameError):
        negotiate(bad, 10_000, 10_000)
