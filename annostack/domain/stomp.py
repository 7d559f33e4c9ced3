"""STOMP 1.2 frames: parsing, encoding and heart-beat negotiation (pure; no I/O).

What the push endpoint needs from the protocol (https://stomp.github.io/stomp-specification-1.2.html):

* A frame is ``COMMAND EOL *(header EOL) EOL body NUL``; EOL is ``\\n`` or ``\\r\\n``.
* Header names and values are escaped (``\\\\``, ``\\c``, ``\\n``, ``\\r``) in every frame
  except CONNECT and CONNECTED; an undefined escape is a fatal error.
* A repeated header: the first occurrence wins.
* With ``content-length`` the body is exactly that many octets (it may contain NUL) and a NUL
  follows; without it the body runs to the first NUL.
* Between frames a peer may send any number of EOLs: those are heart-beats.

The parser is incremental (WebSocket messages need not align with frames) and enforces size
limits while it reads, so a peer can never make it buffer more than ``max_frame_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from annostack.domain.errors import AnnostackError

NUL = b"\x00"
HEARTBEAT = b"\n"
CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
# The spec exempts these two from header escaping, for compatibility with STOMP 1.0 peers.
UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

_ESCAPES = {b"\\": b"\\\\", b":": b"\\c", b"\n": b"\\n", b"\r": b"\\r"}
_UNESCAPES = {ord("\\"): "\\", ord("c"): ":", ord("n"): "\n", ord("r"): "\r"}


class FrameError(AnnostackError):
    """The peer sent something that is not a valid STOMP 1.2 frame (fatal for the session)."""


class FrameTooLarge(FrameError):
    """A frame, its headers or its body exceeds the configured limits."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one peer may make us buffer and parse."""

    max_frame_bytes: int = 64 * 1024
    max_headers: int = 32
    max_header_bytes: int = 4096  # one header line, name and value together


@dataclass(frozen=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


# -- encoding ---------------------------------------------------------------------------------


def escape(value: str) -> str:
    # Backslash first, or the backslashes added for the others would be doubled.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")


def encode(frame: Frame) -> bytes:
    """Frame -> bytes; a body always gets a content-length (so it may contain NUL)."""
    verbatim = frame.command in UNESCAPED_COMMANDS
    lines = [frame.command]
    for name, value in frame.headers.items():
        lines.append(f"{name}:{value}" if verbatim else f"{escape(name)}:{escape(value)}")
    if frame.body and "content-length" not in frame.headers:
        lines.append(f"content-length:{len(frame.body)}")
    head = "\n".join(lines).encode()
    return head + b"\n\n" + frame.body + NUL


class MessageTemplate:
    """MESSAGE frames for one subscription, with the fixed headers escaped once.

    The push hub renders one frame per delivery; only message-id, content-length and the body
    change, so they are all that is formatted each time.
    """

    def __init__(self, destination: str, subscription: str, content_type: str) -> None:
        fixed = {"destination": destination, "subscription": subscription}
        fixed["content-type"] = content_type
        self.prefix = encode(Frame("MESSAGE", fixed))[: -len(b"\n\n" + NUL)] + b"\n"

    def render(self, message_id: int, body: bytes) -> bytes:
        return b"%smessage-id:%d\ncontent-length:%d\n\n%s\x00" % (
            self.prefix,
            message_id,
            len(body),
            body,
        )


# -- parsing ----------------------------------------------------------------------------------


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, "")
        if not following or ord(following) not in _UNESCAPES:
            raise FrameError(f"undefined escape sequence \\{following} in a header")
        out.append(_UNESCAPES[ord(following)])
    return "".join(out)


class FrameParser:
    """Feed bytes as they arrive; get whole frames (heart-beats are counted, not returned)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.buffer = bytearray()
        self.heartbeats = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while (frame := self._next_frame()) is not None:
            frames.append(frame)
        return frames

    def _skip_heartbeats(self) -> None:
        start = 0
        while start < len(self.buffer):
            if self.buffer[start : start + 1] == b"\n":
                start += 1
            elif self.buffer[start : start + 2] == b"\r\n":
                start += 2
            elif self.buffer[start:] == b"\r":
                break  # the rest of a CRLF is still on its way
            else:
                break
            self.heartbeats += 1
        del self.buffer[:start]

    def _next_frame(self) -> Frame | None:
        self._skip_heartbeats()
        end_of_head = self.buffer.find(b"\n\n")
        crlf_head = self.buffer.find(b"\r\n\r\n")
        if crlf_head != -1 and (end_of_head == -1 or crlf_head < end_of_head):
            head_end, body_start = crlf_head, crlf_head + 4
        elif end_of_head != -1:
            head_end, body_start = end_of_head, end_of_head + 2
        else:
            self._check_size(len(self.buffer))
            return None
        command, headers = self._parse_head(bytes(self.buffer[:head_end]))
        body_end = self._body_end(headers, body_start)
        if body_end is None:
            return None
        body = bytes(self.buffer[body_start:body_end])
        del self.buffer[: body_end + 1]
        return Frame(command, headers, body)

    def _check_size(self, size: int) -> None:
        if size > self.limits.max_frame_bytes:
            raise FrameTooLarge(f"frame over {self.limits.max_frame_bytes} bytes")

    def _parse_head(self, head: bytes) -> tuple[str, dict[str, str]]:
        self._check_size(len(head))
        try:
            text = head.decode()
        except UnicodeDecodeError as error:
            raise FrameError("frame headers are not UTF-8") from error
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        command = lines[0]
        if command not in CLIENT_COMMANDS and command not in SERVER_COMMANDS:
            raise FrameError(f"unknown command {command[:40]!r}")
        if len(lines) - 1 > self.limits.max_headers:
            raise FrameTooLarge(f"more than {self.limits.max_headers} headers")
        return command, self._parse_headers(command, lines[1:])

    def _parse_headers(self, command: str, lines: list[str]) -> dict[str, str]:
        verbatim = command in UNESCAPED_COMMANDS
        headers: dict[str, str] = {}
        for line in lines:
            if len(line) > self.limits.max_header_bytes:
                raise FrameTooLarge(f"a header over {self.limits.max_header_bytes} bytes")
            name, colon, value = line.partition(":")
            if not colon or not name:
                raise FrameError(f"malformed header line {line[:40]!r}")
            if not verbatim:
                name, value = unescape(name), unescape(value)
            headers.setdefault(name, value)  # repeated header: the first one wins
        return headers

    def _body_end(self, headers: dict[str, str], body_start: int) -> int | None:
        """Index of the frame's closing NUL, or None while it has not all arrived."""
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise FrameError(f"content-length {length[:20]!r} is not a number")
            end = body_start + int(length)
            self._check_size(end + 1)
            if len(self.buffer) <= end:
                return None
            if self.buffer[end] != 0:
                raise FrameError("body longer than its content-length (no NUL where due)")
            return end
        end = self.buffer.find(NUL, body_start)
        if end == -1:
            self._check_size(len(self.buffer))
            return None
        self._check_size(end + 1)
        return end


# -- heart-beating ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeats:
    """Negotiated intervals in milliseconds; 0 means none in that direction."""

    send_ms: int  # we send a heart-beat after this long without sending anything
    receive_ms: int  # we expect something from the peer at least this often

    @property
    def header(self) -> str:
        return f"{self.send_ms},{self.receive_ms}"


def parse_heartbeat(value: str) -> tuple[int, int]:
    """``"cx,cy"`` -> (cx, cy); absent means ``0,0``."""
    if not value:
        return 0, 0
    first, comma, second = value.partition(",")
    if not comma or not first.strip().isdigit() or not second.strip().isdigit():
        raise FrameError(f"heart-beat header {value[:40]!r} is not two numbers")
    return int(first), int(second)


def negotiate(client_header: str, server_can_send_ms: int, server_wants_ms: int) -> Heartbeats:
    """The spec's rule: each direction is the larger of what one side can do and the other
    wants, and is off if either side says 0."""
    client_can_send, client_wants = parse_heartbeat(client_header)
    send = max(server_can_send_ms, client_wants) if server_can_send_ms and client_wants else 0
    receive = max(client_can_send, server_wants_ms) if client_can_send and server_wants_ms else 0
    return Heartbeats(send_ms=send, receive_ms=receive)
