"""Wiring an exec session to this process's terminal: raw mode, stdin, resize."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import termios
import tty as tty_mod


async def pump_session(session, *, interactive: bool, tty: bool) -> int:
    """Copy stdin to the session and its output to stdout/stderr; the exit code."""
    loop = asyncio.get_running_loop()
    raw = tty and interactive and os.isatty(0)
    saved = termios.tcgetattr(0) if raw else None
    stdin_task = None
    try:
        if raw:
            tty_mod.setraw(0, termios.TCSANOW)  # keep typeahead: TCSAFLUSH would drop it
        if tty and os.isatty(1):
            def on_winch() -> None:
                size = os.get_terminal_size(1)
                session.resize(size.lines, size.columns)
            loop.add_signal_handler(signal.SIGWINCH, on_winch)
        if interactive:
            stdin_task = asyncio.ensure_future(_copy_stdin(session))
        async for stream, data in session.output():
            out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
            out.write(data)
            out.flush()
    finally:
        if stdin_task:
            stdin_task.cancel()
        if tty and os.isatty(1):
            loop.remove_signal_handler(signal.SIGWINCH)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return session.exit_code if session.exit_code is not None else 255


async def _copy_stdin(session) -> None:
    fd = sys.stdin.fileno()
    while True:
        data = await _read(fd)
        if not data:
            session.close_stdin()
            return
        await session.write(data)  # waits for the guest's input credit


async def _read(fd: int) -> bytes:
    """One read from fd without blocking the loop (a regular file cannot be polled: use a thread)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    try:
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    except (PermissionError, OSError, ValueError):
        return await asyncio.to_thread(os.read, fd, 65536)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
