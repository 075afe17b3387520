"""Frames and field lists of the kestrel protocol (guest_agent/PROTOCOL.md).

Pure functions and one incremental decoder, no I/O: the supervisor, the agent
client and the fuzz tests share them. The guest is not trusted, so the decoder
bounds every allocation by MAX_PAYLOAD and rejects what the spec does not allow.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Iterator

from hypr_engine.errors import ProtocolError

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
MAX_PAYLOAD = 65536
HEADER = struct.Struct(">IBBHI")  # length, type, flags, reserved, channel
SYNC = b"\xffHYPRSYN"
FLAG_MORE = 0x01
INITIAL_WINDOW = 262144


class Msg(enum.IntEnum):
    # host -> guest
    HELLO = 0x01
    EXEC = 0x02
    STDIN = 0x03
    RESIZE = 0x04
    SIGNAL = 0x05
    WINDOW = 0x06
    PS = 0x07
    STATS = 0x08
    SHUTDOWN = 0x09
    KILL = 0x0A
    PING = 0x0B
    STAT = 0x0C
    COPY_OUT = 0x0D
    COPY_IN = 0x0E
    # guest -> host
    HELLO_OK = 0x81
    STARTED = 0x82
    STDOUT = 0x83
    STDERR = 0x84
    EXIT = 0x85
    GUEST_WINDOW = 0x86
    ERROR = 0x87
    PS_REPLY = 0x88
    STATS_REPLY = 0x89
    OK = 0x8A
    PONG = 0x8B
    STAT_REPLY = 0x8C
    # client -> supervisor (never reach the guest); see supervisor.py
    SV_WAIT = 0x40
    SV_STOP = 0x41
    # supervisor -> client
    SV_EXITED = 0xC0


HOST_TYPES = frozenset(m for m in Msg if m < 0x40)
GUEST_TYPES = frozenset(m for m in Msg if 0x80 <= m < 0xC0)
CLIENT_TYPES = HOST_TYPES | {Msg.SV_WAIT, Msg.SV_STOP}
SUPERVISOR_TYPES = GUEST_TYPES | {Msg.SV_EXITED}


class ErrorCode(enum.IntEnum):
    BAD_REQUEST = 1
    UNSUPPORTED_VERSION = 2
    NO_SUCH_SESSION = 3
    BUSY = 4
    CANNOT_EXECUTE = 126
    NOT_FOUND = 127


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    channel: int
    payload: bytes = b""
    flags: int = 0


def encode_frame(frame: Frame) -> bytes:
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(frame.payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(len(frame.payload), frame.type, frame.flags, 0, frame.channel) + frame.payload


def frame(type_: int, channel: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """Shorthand: encode one frame."""
    return encode_frame(Frame(type_, channel, payload, flags))


class FrameDecoder:
    """Incremental decoder for one direction of the stream.

    `accept` names the frame types the peer may send; anything else, or a length
    above MAX_PAYLOAD, raises ProtocolError (the caller then resynchronises by
    sending SYNC + HELLO on a new connection). Starts in *hunting* mode when
    `hunting` is true: bytes are discarded until the SYNC marker.
    """

    def __init__(self, accept: frozenset[int], *, hunting: bool = False) -> None:
        self._accept = accept
        self._buf = bytearray()
        self.hunting = hunting

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        while True:
            if self.hunting:
                at = self._buf.find(SYNC)
                if at < 0:
                    # Keep a tail that may be the start of a SYNC split across reads.
                    del self._buf[: max(0, len(self._buf) - (len(SYNC) - 1))]
                    return
                del self._buf[: at + len(SYNC)]
                self.hunting = False
                continue
            if self._buf[:1] == SYNC[:1]:
                if len(self._buf) < len(SYNC):
                    return
                if bytes(self._buf[: len(SYNC)]) != SYNC:
                    raise ProtocolError("corrupt stream: bad sync marker")
                del self._buf[: len(SYNC)]
                continue
            if len(self._buf) < HEADER.size:
                return
            length, type_, flags, reserved, channel = HEADER.unpack_from(self._buf)
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
            if type_ not in self._accept:
                raise ProtocolError(f"unexpected frame type 0x{type_:02x}")
            if len(self._buf) < HEADER.size + length:
                return
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            yield Frame(type_, channel, payload, flags)


# --- field lists -----------------------------------------------------------

FIELD_HEADER = struct.Struct(">BI")


def encode_fields(fields: list[tuple[int, bytes | str | int | None]], *, int_width: dict[int, int] | None = None) -> bytes:
    """Encode (tag, value) pairs. str -> UTF-8, int -> big-endian of the width
    given in int_width (default 4), None -> flag (empty value)."""
    out = bytearray()
    widths = int_width or {}
    for tag, value in fields:
        if value is None:
            raw = b""
        elif isinstance(value, bool):
            raise TypeError("use None for flags")
        elif isinstance(value, int):
            raw = value.to_bytes(widths.get(tag, 4), "big")
        elif isinstance(value, str):
            raw = value.encode()
        else:
            raw = bytes(value)
        out += FIELD_HEADER.pack(tag, len(raw)) + raw
    return bytes(out)


def decode_fields(data: bytes) -> list[tuple[int, bytes]]:
    """Decode a field list; raises ProtocolError if a field runs past the end."""
    fields: list[tuple[int, bytes]] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < FIELD_HEADER.size:
            raise ProtocolError("truncated field header")
        tag, length = FIELD_HEADER.unpack_from(data, pos)
        pos += FIELD_HEADER.size
        if length > end - pos:
            raise ProtocolError(f"field {tag} runs past the end of its list")
        fields.append((tag, data[pos : pos + length]))
        pos += length
    return fields


class Fields:
    """Read access to a decoded field list by tag, with typed getters."""

    def __init__(self, data: bytes) -> None:
        self._items = decode_fields(data)

    def all(self, tag: int) -> list[bytes]:
        return [v for t, v in self._items if t == tag]

    def first(self, tag: int) -> bytes | None:
        for t, v in self._items:
            if t == tag:
                return v
        return None

    def str(self, tag: int, default: str | None = None) -> str | None:
        v = self.first(tag)
        return default if v is None else v.decode("utf-8", "replace")

    def uint(self, tag: int, width: int, default: int | None = None) -> int | None:
        v = self.first(tag)
        if v is None:
            return default
        if len(v) != width:
            raise ProtocolError(f"field {tag} must be {width} bytes, got {len(v)}")
        return int.from_bytes(v, "big")

    def flag(self, tag: int) -> bool:
        return self.first(tag) is not None


# --- message bodies ----------------------------------------------------------

class HelloTag(enum.IntEnum):
    MIN_VERSION = 1
    MAX_VERSION = 2


class HelloOkTag(enum.IntEnum):
    VERSION = 1
    AGENT = 2
    WORKLOAD_PID = 3
    MAX_PAYLOAD = 4


class ExecTag(enum.IntEnum):
    ARGV = 1
    ENV = 2
    WORKDIR = 3
    USER = 4
    TTY = 5
    ROWS = 6
    COLS = 7
    STDIN = 8
    MAIN = 9


class ErrorTag(enum.IntEnum):
    CODE = 1
    MESSAGE = 2


class ShutdownTag(enum.IntEnum):
    SIGNAL = 1
    GRACE_MS = 2


def hello_payload(min_version: int = MIN_PROTOCOL_VERSION, max_version: int = PROTOCOL_VERSION) -> bytes:
    widths = {HelloTag.MIN_VERSION: 2, HelloTag.MAX_VERSION: 2}
    return encode_fields([(HelloTag.MIN_VERSION, min_version), (HelloTag.MAX_VERSION, max_version)], int_width=widths)


@dataclass(frozen=True)
class HelloOk:
    version: int
    agent: str
    workload_pid: int
    max_payload: int

    @classmethod
    def parse(cls, payload: bytes) -> "HelloOk":
        f = Fields(payload)
        version = f.uint(HelloOkTag.VERSION, 2)
        if version is None:
            raise ProtocolError("HELLO_OK without a version")
        return cls(
            version=version,
            agent=f.str(HelloOkTag.AGENT, "") or "",
            workload_pid=f.uint(HelloOkTag.WORKLOAD_PID, 4, 0) or 0,
            max_payload=f.uint(HelloOkTag.MAX_PAYLOAD, 4, MAX_PAYLOAD) or MAX_PAYLOAD,
        )

    def encode(self) -> bytes:
        return encode_fields(
            [
                (HelloOkTag.VERSION, self.version),
                (HelloOkTag.AGENT, self.agent),
                (HelloOkTag.WORKLOAD_PID, self.workload_pid),
                (HelloOkTag.MAX_PAYLOAD, self.max_payload),
            ],
            int_width={HelloOkTag.VERSION: 2},
        )


@dataclass(frozen=True)
class ExecRequest:
    argv: list[str]
    env: list[str] | None = None
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    rows: int = 24
    cols: int = 80
    stdin: bool = False
    main: bool = False

    def encode(self) -> bytes:
        fields: list[tuple[int, bytes | str | int | None]] = [(ExecTag.ARGV, a) for a in self.argv]
        fields += [(ExecTag.ENV, e) for e in (self.env or [])]
        if self.workdir:
            fields.append((ExecTag.WORKDIR, self.workdir))
        if self.user:
            fields.append((ExecTag.USER, self.user))
        if self.tty:
            fields += [(ExecTag.TTY, None), (ExecTag.ROWS, self.rows), (ExecTag.COLS, self.cols)]
        if self.stdin:
            fields.append((ExecTag.STDIN, None))
        if self.main:
            fields.append((ExecTag.MAIN, None))
        return encode_fields(fields, int_width={ExecTag.ROWS: 2, ExecTag.COLS: 2})

    @classmethod
    def parse(cls, payload: bytes) -> "ExecRequest":
        f = Fields(payload)
        argv = [a.decode("utf-8", "replace") for a in f.all(ExecTag.ARGV)]
        if not argv:
            raise ProtocolError("EXEC without argv")
        env = [e.decode("utf-8", "replace") for e in f.all(ExecTag.ENV)]
        return cls(
            argv=argv,
            env=env or None,
            workdir=f.str(ExecTag.WORKDIR),
            user=f.str(ExecTag.USER),
            tty=f.flag(ExecTag.TTY),
            rows=f.uint(ExecTag.ROWS, 2, 24) or 24,
            cols=f.uint(ExecTag.COLS, 2, 80) or 80,
            stdin=f.flag(ExecTag.STDIN),
            main=f.flag(ExecTag.MAIN),
        )


@dataclass(frozen=True)
class AgentError:
    code: int
    message: str

    @classmethod
    def parse(cls, payload: bytes) -> "AgentError":
        f = Fields(payload)
        return cls(code=f.uint(ErrorTag.CODE, 4, 0) or 0, message=f.str(ErrorTag.MESSAGE, "") or "")

    def encode(self) -> bytes:
        return encode_fields([(ErrorTag.CODE, self.code), (ErrorTag.MESSAGE, self.message)])


def shutdown_payload(signal: int | None, grace_ms: int) -> bytes:
    fields: list[tuple[int, bytes | str | int | None]] = []
    if signal:
        fields.append((ShutdownTag.SIGNAL, signal))
    fields.append((ShutdownTag.GRACE_MS, grace_ms))
    return encode_fields(fields)


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise ProtocolError(f"{what}: expected 4 bytes, got {len(payload)}")
    return int.from_bytes(payload, "big")


def parse_i32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise ProtocolError(f"{what}: expected 4 bytes, got {len(payload)}")
    return int.from_bytes(payload, "big", signed=True)


def resize_payload(rows: int, cols: int) -> bytes:
    return struct.pack(">HH", rows, cols)
