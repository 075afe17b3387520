"""hyprd: the HYPR daemon. Serves the API (hypr.v1, gRPC) on a Unix socket.

    hyprd [--foreground]

It always runs in the foreground (the flag is accepted for the systemd unit and for
habit): under systemd use contrib/hyprd.service (Type=notify, KillMode=process); by
hand, `hyprd &` or a terminal multiplexer. It never forks itself into the background.

- Socket: `$HYPR_RUNTIME_DIR/hyprd.sock` (paths.py; at most 107 bytes), mode 0660, group
  `hypr` when that group exists (then the runtime directory becomes 0710 with that
  group, so members can reach the socket). Membership of that group is as powerful as
  root's account, as with Docker's group: hyprd reads paths clients name.
- One engine per data directory: hyprd takes the data directory's lock exclusively
  (Engine.open(exclusive=True)); a second hyprd, or hyprd beside a running embedded
  `hypr`, refuses to start and says which.
- Start: reconcile.py re-adopts running VMs, records exits that happened while no
  daemon ran, finishes interrupted removals and stops, deletes leftovers; then serves.
- SIGTERM or SIGINT: stop accepting, remove the socket, let operations in progress
  finish (up to 10 s), exit 0. VMs keep running: each is owned by its supervisor.
- It is a child subreaper (PR_SET_CHILD_SUBREAPER): supervisors it starts (they fork
  away from it) are re-parented to it rather than to PID 1, which on these machines
  does not reap, and it reaps them when they end.
- Log level: `HYPR_LOG_LEVEL` (DEBUG, INFO, WARNING, ERROR; default INFO), to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import grp
import logging
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

from hypr_engine import __version__

log = logging.getLogger("hyprd")
PR_SET_CHILD_SUBREAPER = 36
SHUTDOWN_GRACE = 10.0
REAP_INTERVAL = 1.0
PRUNE_INTERVAL = 3600.0


class DaemonError(Exception):
    """hyprd cannot start; the message says why."""


# --- process housekeeping --------------------------------------------------------------

def set_child_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


class Reaper:
    """Reaps children that were adopted (orphaned descendants: supervisors, their QEMUs).

    Only zombies in another session than hyprd's, seen as zombies on two passes, are
    reaped: the engine's own direct children (mkfs, the supervisor's first fork) are
    waited for by the code that started them, which must not find them gone.
    """

    def __init__(self) -> None:
        self._seen: dict[int, float] = {}
        self.reaped = 0

    def _children(self) -> list[int]:
        pids: list[int] = []
        try:
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/children") as f:
                    pids += [int(p) for p in f.read().split()]
            return pids
        except OSError:
            me = os.getpid()
            for name in os.listdir("/proc"):
                if name.isdigit() and _stat(int(name))[1:2] == [str(me)]:
                    pids.append(int(name))
            return pids

    def reap(self) -> None:
        now = time.monotonic()
        my_session = os.getsid(0)
        zombies = set()
        for pid in self._children():
            fields = _stat(pid)
            if len(fields) < 4 or fields[0] != "Z" or int(fields[3]) == my_session:
                continue
            zombies.add(pid)
            first = self._seen.setdefault(pid, now)
            if now - first >= REAP_INTERVAL * 0.9:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        self.reaped += 1
                        log.debug("reaped %d", pid)
                except ChildProcessError:
                    pass
                zombies.discard(pid)
        self._seen = {p: t for p, t in self._seen.items() if p in zombies}


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return []
    return raw[raw.rfind(")") + 2:].split()   # state, ppid, pgrp, session, ...


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) we are ready; a no-op elsewhere."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(target)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)


# --- the socket ------------------------------------------------------------------------------

def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def bind_socket(path: Path) -> socket.socket:
    """Bind the API socket: 0660, group hypr if it exists; a stale socket is replaced."""
    from hypr_engine.paths import SOCKET_PATH_MAX

    if len(str(path)) > SOCKET_PATH_MAX:
        raise DaemonError(f"socket path {path} is {len(str(path))} bytes, more than a Unix socket allows "
                          f"({SOCKET_PATH_MAX}); set HYPR_RUNTIME_DIR to a shorter directory")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise DaemonError(f"{path} exists and is not a socket; remove it")
        if _answers(path):
            raise DaemonError(f"another hyprd is serving {path} (for another data directory?)")
        path.unlink()   # stale: left by a hyprd that was killed
        log.info("removed the stale socket %s", path)
    try:
        group = grp.getgrnam("hypr").gr_gid
    except KeyError:
        group = None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if group is not None:
        try:
            os.chown(path, -1, group)
            runtime = path.parent
            if runtime.stat().st_uid == os.geteuid():
                os.chown(runtime, -1, group)
                os.chmod(runtime, 0o710)
        except OSError as exc:
            log.warning("cannot give the socket to group hypr: %s", exc)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _remove_socket(path: Path, inode: int) -> None:
    try:
        if os.lstat(path).st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass


# --- the daemon -----------------------------------------------------------------------------------

async def _refusal(layout, socket_path: Path) -> str:
    if socket_path.exists() and _answers(socket_path):
        try:
            from hypr_engine._grpc import GrpcTransport

            t = await GrpcTransport.connect(socket_path, timeout=3)
            pid = t.hello.pid
            await t.close()
            return f"hyprd is already running for {layout.data} (pid {pid}, socket {socket_path})"
        except Exception:
            return f"hyprd is already running for {layout.data} (socket {socket_path})"
    return (f"the data directory {layout.data} is in use by another HYPR engine (a `hypr` command running "
            "without hyprd, or a hyprd that is starting or stopping); wait for it to end and start hyprd again")


async def run(layout=None, *, stop: asyncio.Event | None = None) -> None:
    from grpclib.server import Server

    from hypr_engine._embedded import EmbeddedTransport
    from hypr_engine.api import SOCKET_NAME, convert, server as api_server
    from hypr_engine.engine import Engine
    from hypr_engine.errors import HyprError, Locked
    from hypr_engine.paths import Layout
    from hypr_engine.reconcile import reconcile_all

    layout = layout or Layout.default()
    socket_path = layout.runtime / SOCKET_NAME
    set_child_subreaper()
    try:
        engine = await Engine.open(layout, exclusive=True)
    except Locked:
        raise DaemonError(await _refusal(layout, socket_path)) from None
    except HyprError as exc:
        raise DaemonError(exc.message) from None
    transport = EmbeddedTransport(engine)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    reaper = Reaper()
    background: list[asyncio.Task] = []
    inode = None
    try:
        started = time.monotonic()
        report = await reconcile_all(engine)
        log.info("reconciled in %.2fs: %s", time.monotonic() - started, report.summary())
        sock = bind_socket(socket_path)
        inode = os.lstat(socket_path).st_ino
        state = api_server.DaemonState(transport, str(socket_path))
        server = Server(api_server.services(state), status_details_codec=convert.StatusDetailsCodec())
        api_server.install(server, state)
        await server.start(sock=sock)
        await transport.bus.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGCHLD, reaper.reap)

        async def housekeeping() -> None:
            next_prune = 0.0
            while True:
                reaper.reap()
                if time.monotonic() >= next_prune:
                    try:
                        await transport.bus.prune()
                    except Exception as exc:
                        log.warning("pruning events failed: %s", exc)
                    next_prune = time.monotonic() + PRUNE_INTERVAL
                await asyncio.sleep(REAP_INTERVAL)

        background.append(asyncio.ensure_future(housekeeping()))
        for vm_id in report.to_stop:  # a stop the previous daemon did not finish
            state.detach(transport.stop_vm(vm_id))
        sd_notify("READY=1")
        log.info("hyprd %s ready: pid %d, socket %s, data %s", __version__, os.getpid(), socket_path, layout.data)
        await stop.wait()

        log.info("stopping: no new calls; VMs keep running")
        sd_notify("STOPPING=1")
        state.serving = False
        _remove_socket(socket_path, inode)
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except asyncio.TimeoutError:
            log.warning("some calls did not end within 5 s")
        await state.drain(SHUTDOWN_GRACE)
    finally:
        for task in background:
            task.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            loop.remove_signal_handler(sig)
        if inode is not None:
            _remove_socket(socket_path, inode)
        await transport.close()
    log.info("stopped")


def _log_level() -> int:
    name = os.environ.get("HYPR_LOG_LEVEL", "INFO").strip().upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise DaemonError(f"invalid HYPR_LOG_LEVEL {name!r}: use DEBUG, INFO, WARNING or ERROR")
    return level


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="hyprd", description="The HYPR daemon: serves the HYPR API on $HYPR_RUNTIME_DIR/hyprd.sock.",
        epilog="hyprd always runs in the foreground; use contrib/hyprd.service under systemd.")
    parser.add_argument("--foreground", action="store_true", help="run in the foreground (the only mode)")
    parser.add_argument("--version", action="version", version=f"hyprd {__version__}")
    parser.parse_args(argv)
    try:
        logging.basicConfig(level=_log_level(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(run())
    except DaemonError as exc:
        print(f"hyprd: error: {exc}", file=sys.stderr)
        raise SystemExit(1)
    except KeyboardInterrupt:
        pass
    raise SystemExit(0)


if __name__ == "__main__":
    main()
