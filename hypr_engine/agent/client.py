"""Async client of a VM's agent, through its supervisor's control socket.

One connection carries any number of concurrent requests and exec sessions,
each on its own channel. Output of a session is queued for its reader, and
credit (WINDOW) is returned to the guest only as that reader consumes, so a
slow reader holds back only its own session (PROTOCOL.md, "flow control").
"""

from __future__ import annotations

import asyncio
import json
import signal as signal_mod
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from hypr_engine.agent import codec
from hypr_engine.agent.codec import SUPERVISOR_TYPES, SYNC, Frame, FrameDecoder, Msg
from hypr_engine.errors import (
    CannotInvoke,
    CommandNotFound,
    HyprError,
    InvalidArgument,
    NotFound,
    ProtocolError,
    Timeout,
    Unavailable,
)

WINDOW_BATCH = 32768
# STAT, COPY_OUT and COPY_IN (PROTOCOL.md, "Copying files")
PATH_TAG = 1            # the one field of their requests
PATH_NOT_FOUND = 5      # their ERROR code for a path that does not exist


@dataclass(frozen=True)
class VmExited:
    exit_code: int
    error: str | None


class AgentClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(SUPERVISOR_TYPES, hunting=True)
        self._channels: dict[int, asyncio.Queue[Frame]] = {}
        self._next = 1
        self._hello: asyncio.Future[codec.HelloOk | VmExited] = asyncio.get_running_loop().create_future()
        self._exit_waiters: list[asyncio.Future[VmExited]] = []
        self._closed = asyncio.Event()
        self._reader_task = asyncio.ensure_future(self._read_loop())
        self.hello: codec.HelloOk | None = None

    @classmethod
    async def connect(cls, control_socket: Path, *, timeout: float = 60.0) -> "AgentClient":
        """Connect and greet; waits (up to `timeout`) for a booting guest's hello."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(control_socket)), 5)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Unavailable(f"the VM's supervisor is not answering ({exc.strerror})") from None
        except asyncio.TimeoutError:
            raise Timeout("timed out connecting to the VM's supervisor") from None
        client = cls(reader, writer)
        writer.write(SYNC + codec.frame(Msg.HELLO, 0, codec.hello_payload()))
        try:
            result = await asyncio.wait_for(asyncio.shield(client._hello), timeout)
        except asyncio.TimeoutError:
            await client.close()
            raise Timeout(f"the VM's agent did not answer within {timeout:g} s") from None
        if isinstance(result, VmExited):
            await client.close()
            raise Unavailable("the VM is not running")
        client.hello = result
        return client

    async def close(self) -> None:
        self._reader_task.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def _read_loop(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for fr in self._decoder.feed(data):
                    self._dispatch(fr)
        except (ProtocolError, ConnectionError, OSError):
            pass
        finally:
            self._closed.set()
            if not self._hello.done():
                self._hello.set_result(VmExited(-1, "connection closed"))
            for q in self._channels.values():
                q.put_nowait(Frame(Msg.ERROR, 0, codec.AgentError(0, "connection to the VM closed").encode()))
            for w in self._exit_waiters:
                if not w.done():
                    w.set_exception(Unavailable("connection to the VM's supervisor closed"))

    def _dispatch(self, fr: Frame) -> None:
        if fr.type == Msg.SV_EXITED:
            info = json.loads(fr.payload or b"{}")
            exited = VmExited(int(info.get("exit_code", -1)), info.get("error"))
            if not self._hello.done():
                self._hello.set_result(exited)
            for w in self._exit_waiters:
                if not w.done():
                    w.set_result(exited)
            return
        if fr.channel == 0:
            if fr.type == Msg.HELLO_OK and not self._hello.done():
                self._hello.set_result(codec.HelloOk.parse(fr.payload))
            return
        q = self._channels.get(fr.channel)
        if q is not None:
            q.put_nowait(fr)

    def _open_channel(self) -> tuple[int, asyncio.Queue[Frame]]:
        if self._closed.is_set():
            raise Unavailable("connection to the VM's supervisor closed")
        channel = self._next
        self._next += 1
        q: asyncio.Queue[Frame] = asyncio.Queue()
        self._channels[channel] = q
        return channel, q

    def _send(self, type_: int, channel: int, payload: bytes = b"") -> None:
        self._writer.write(codec.frame(type_, channel, payload))

    async def _request(self, type_: int, payload: bytes = b"", *, timeout: float = 30.0,
                       errors: dict[int, type[HyprError]] | None = None) -> list[Frame]:
        """Send a request and collect its replies; an ERROR raises HyprError, or the class that
        `errors` names for its code."""
        channel, q = self._open_channel()
        try:
            self._send(type_, channel, payload)
            replies: list[Frame] = []
            async with asyncio.timeout(timeout):
                while True:
                    fr = await q.get()
                    if fr.type == Msg.ERROR:
                        err = codec.AgentError.parse(fr.payload)
                        raise (errors or {}).get(err.code, HyprError)(f"guest agent: {err.message}")
                    replies.append(fr)
                    if not fr.flags & codec.FLAG_MORE:
                        return replies
        except TimeoutError:
            raise Timeout(f"the guest agent did not answer {Msg(type_).name} within {timeout:g} s") from None
        finally:
            self._channels.pop(channel, None)

    async def ping(self, data: bytes = b"ping") -> bytes:
        (reply,) = await self._request(Msg.PING, data)
        return reply.payload

    async def ps(self) -> list[dict[str, str]]:
        replies = await self._request(Msg.PS)
        text = b"".join(r.payload for r in replies).decode("utf-8", "replace")
        keys = ("pid", "ppid", "uid", "state", "rss_kb", "cpu_ticks", "start_ticks", "threads", "comm", "cmdline")
        return [dict(zip(keys, line.split("\t", len(keys) - 1))) for line in text.splitlines() if line]

    async def stats(self) -> dict[str, int]:
        (reply,) = await self._request(Msg.STATS)
        out: dict[str, int] = {}
        for line in reply.payload.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out

    async def kill(self, sig: int, pid: int | None = None) -> None:
        """Signal the workload, or with `pid` that process of the guest (not pid 1)."""
        if pid is None:
            await self._request(Msg.KILL, codec.u32(sig))
            return
        await self._request(Msg.KILL, codec.u32(sig) + codec.u32(pid),
                            errors={PATH_NOT_FOUND: NotFound, codec.ErrorCode.BAD_REQUEST: InvalidArgument})

    async def stop(self, sig: int | None, grace_ms: int) -> None:
        """Ask the supervisor for a graceful stop (it kills QEMU past the grace period)."""
        await self._request(Msg.SV_STOP, codec.shutdown_payload(sig, grace_ms))

    async def wait_exit(self) -> VmExited:
        waiter: asyncio.Future[VmExited] = asyncio.get_running_loop().create_future()
        self._exit_waiters.append(waiter)
        self._send(Msg.SV_WAIT, 0)
        return await waiter

    async def exec(self, request: codec.ExecRequest, *, timeout: float = 30.0) -> "ExecSession":
        channel, q = self._open_channel()
        self._send(Msg.EXEC, channel, request.encode())
        try:
            async with asyncio.timeout(timeout):
                fr = await q.get()
        except TimeoutError:
            self._channels.pop(channel, None)
            raise Timeout(f"exec did not start within {timeout:g} s") from None
        if fr.type == Msg.ERROR:
            self._channels.pop(channel, None)
            err = codec.AgentError.parse(fr.payload)
            if err.code == codec.ErrorCode.NOT_FOUND:
                raise CommandNotFound(err.message)
            if err.code == codec.ErrorCode.CANNOT_EXECUTE:
                raise CannotInvoke(err.message)
            raise HyprError(f"exec failed: {err.message}")
        if fr.type != Msg.STARTED:
            self._channels.pop(channel, None)
            raise ProtocolError(f"expected STARTED, got {fr.type:#x}")
        return ExecSession(self, channel, q, codec.parse_u32(fr.payload, "STARTED"))

    # --- files: STAT, COPY_OUT, COPY_IN (PROTOCOL.md, "Copying files") --------------

    async def _path_request(self, type_: int, path: str, timeout: float) -> tuple[int, asyncio.Queue[Frame], Frame]:
        """Send a request whose body is one path; returns its channel, queue and first reply."""
        channel, q = self._open_channel()
        self._send(type_, channel, codec.encode_fields([(PATH_TAG, path)]))
        try:
            async with asyncio.timeout(timeout):
                fr = await q.get()
        except TimeoutError:
            if type_ != Msg.STAT:  # a copy that may still start: end it in the guest
                self._send(Msg.SIGNAL, channel, codec.u32(signal_mod.SIGKILL))
            self._channels.pop(channel, None)
            raise Timeout(f"the guest agent did not answer {Msg(type_).name} within {timeout:g} s") from None
        if fr.type == Msg.ERROR:
            self._channels.pop(channel, None)
            err = codec.AgentError.parse(fr.payload)
            if err.code == PATH_NOT_FOUND:
                raise NotFound(f"no such file or directory in the VM: {path}")
            raise HyprError(f"{Msg(type_).name.lower().replace('_', ' ')} {path}: {err.message}")
        return channel, q, fr

    async def stat(self, path: str, *, timeout: float = 30.0) -> dict:
        """lstat() of `path` in the guest (symlinks are not followed).

        Returns {"type": "file"|"dir"|"symlink"|"other", "mode": st_mode, "uid", "gid",
        "size", "mtime" (seconds), "link": the symlink's target or None}; raises NotFound
        when the path does not exist.
        """
        channel, _q, fr = await self._path_request(Msg.STAT, path, timeout)
        self._channels.pop(channel, None)
        if fr.type != Msg.STAT_REPLY:
            raise ProtocolError(f"expected STAT_REPLY, got {fr.type:#x}")
        f = codec.Fields(fr.payload)
        return {
            "type": f.str(1, "other"),
            "mode": f.uint(2, 4, 0),
            "uid": f.uint(3, 4, 0),
            "gid": f.uint(4, 4, 0),
            "size": f.uint(5, 8, 0),
            "mtime": f.uint(6, 4, 0),
            "link": f.str(7),
        }

    async def _copy_session(self, type_: int, path: str, timeout: float) -> "ExecSession":
        channel, q, fr = await self._path_request(type_, path, timeout)
        if fr.type != Msg.STARTED:
            self._channels.pop(channel, None)
            raise ProtocolError(f"expected STARTED, got {fr.type:#x}")
        return ExecSession(self, channel, q, codec.parse_u32(fr.payload, "STARTED"))

    async def copy_out(self, path: str, *, timeout: float = 30.0) -> "ExecSession":
        """Stream `path` (file, directory tree or symlink, never followed) out of the guest.

        The session's output() yields ("stdout", bytes) of a POSIX tar whose member names
        are relative to the path's parent directory (/etc/hosts -> hosts, /etc -> etc/...);
        the exit code is 0 once the whole archive came. Output credit is returned as the
        caller consumes, as for exec. Raises NotFound when the path does not exist.
        """
        return await self._copy_session(Msg.COPY_OUT, path, timeout)

    async def copy_in(self, path: str, *, timeout: float = 30.0) -> "ExecSession":
        """Extract a tar into the existing directory `path` in the guest.

        write() the archive, close_stdin(), then wait() for exit code 0. The guest's input
        credit comes back through output(), so run wait() alongside write() for archives
        above 256 KiB. A member the guest refuses (absolute, with "..", through a symlink)
        ends the session: wait() raises. Raises NotFound when the directory does not exist.
        """
        return await self._copy_session(Msg.COPY_IN, path, timeout)


class ExecSession:
    """One running exec: output in, stdin out, resize, signals, exit code."""

    def __init__(self, client: AgentClient, channel: int, queue: asyncio.Queue[Frame], pid: int) -> None:
        self._client = client
        self.channel = channel
        self._queue = queue
        self.pid = pid
        self.exit_code: int | None = None
        self._unacked = 0
        self._stdin_credit = codec.INITIAL_WINDOW
        self._credit_event = asyncio.Event()

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """Yields ("stdout"|"stderr", data) until the process exits; then exit_code is set."""
        while True:
            fr = await self._queue.get()
            if fr.type in (Msg.STDOUT, Msg.STDERR):
                self._unacked += len(fr.payload)
                yield ("stdout" if fr.type == Msg.STDOUT else "stderr"), fr.payload
                # Credit goes back once the consumer has taken the data.
                if self._unacked >= WINDOW_BATCH or self._queue.empty():
                    self._client._send(Msg.WINDOW, self.channel, codec.u32(self._unacked))
                    self._unacked = 0
            elif fr.type == Msg.GUEST_WINDOW:
                self._stdin_credit += codec.parse_u32(fr.payload, "WINDOW")
                self._credit_event.set()
            elif fr.type == Msg.EXIT:
                self.exit_code = codec.parse_i32(fr.payload, "EXIT")
                self._client._channels.pop(self.channel, None)
                return
            elif fr.type == Msg.ERROR:
                self._client._channels.pop(self.channel, None)
                err = codec.AgentError.parse(fr.payload)
                raise Unavailable(f"exec session ended: {err.message}")

    async def wait(self) -> int:
        async for _ in self.output():
            pass
        assert self.exit_code is not None
        return self.exit_code

    async def write(self, data: bytes) -> None:
        """Send stdin, never more than the guest has room for."""
        view = memoryview(data)
        while view:
            while self._stdin_credit <= 0:
                self._credit_event.clear()
                await self._credit_event.wait()
            n = min(len(view), self._stdin_credit, codec.MAX_PAYLOAD)
            self._client._send(Msg.STDIN, self.channel, bytes(view[:n]))
            self._stdin_credit -= n
            view = view[n:]
        await self._client._writer.drain()

    def close_stdin(self) -> None:
        self._client._send(Msg.STDIN, self.channel, b"")

    def resize(self, rows: int, cols: int) -> None:
        self._client._send(Msg.RESIZE, self.channel, codec.resize_payload(rows, cols))

    def signal(self, sig: int = signal_mod.SIGTERM) -> None:
        self._client._send(Msg.SIGNAL, self.channel, codec.u32(sig))
