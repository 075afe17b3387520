"""The per-VM supervisor: QEMU's parent, for the VM's whole life.

    python -m hypr_engine.supervisor VM_DIR READY_FD

It is started by an engine in a new session and forks once more, so it is no
HYPR process's child and outlives all of them (DESIGN.md, "The one rule").
It then:

- spawns QEMU from `launch.json` with PR_SET_PDEATHSIG, so QEMU never outlives
  it (a VMM must never be orphaned), and watches it through a pidfd;
- connects to QEMU's agent socket (one client at a time) and multiplexes it to
  any number of HYPR clients on `control.sock`, rewriting channel numbers so
  their sessions never collide (PROTOCOL.md);
- records `running` when the guest says hello, and on QEMU's exit the
  workload's exit code (read from the log file kestrel wrote) in `exit.json`
  and in the database, removes the VM if it was started with `--rm`, and exits.

It imports only the standard library and the protocol codec: it runs once per
VM, so it stays small.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.agent import codec
from hypr_engine.agent.codec import CLIENT_TYPES, GUEST_TYPES, SYNC, Frame, FrameDecoder, Msg
from hypr_engine.errors import ProtocolError
from hypr_engine.health import HealthState
from hypr_engine.logfile import exit_record, parse_line, rotate_if_needed
from hypr_engine.net import gvproxy, userproxy
from hypr_engine.net.driver import substitute_fds
from hypr_engine.proc import ProcessRef

PR_SET_PDEATHSIG = 1
AGENT_CONNECT_TIMEOUT = 20.0
KILL_MARGIN = 10.0          # seconds past the guest's grace period before QEMU is killed
REQUEST_TYPES = {Msg.EXEC, Msg.PS, Msg.STATS, Msg.SHUTDOWN, Msg.KILL, Msg.PING, Msg.STAT, Msg.COPY_OUT, Msg.COPY_IN}
SESSION_TYPES = {Msg.STDIN, Msg.RESIZE, Msg.SIGNAL, Msg.WINDOW}
FINAL_TYPES = {Msg.EXIT, Msg.ERROR, Msg.STATS_REPLY, Msg.OK, Msg.PONG, Msg.STAT_REPLY}


def atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@dataclass(eq=False)  # identity semantics: clients live in a set
class Client:
    writer: asyncio.StreamWriter
    channels: dict[int, int] = field(default_factory=dict)  # client channel -> global channel
    waiting_exit: bool = False

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class Supervisor:
    def __init__(self, vm_dir: Path) -> None:
        self.vm_dir = vm_dir
        self.launch = json.loads((vm_dir / "launch.json").read_text())
        self.vm_id: str = self.launch["vm_id"]
        self.runtime_dir = Path(self.launch["runtime_dir"])
        self.clients: set[Client] = set()
        self.routes: dict[int, tuple[Client, int]] = {}   # global channel -> (client, its channel)
        self.next_channel = 1
        self.guest_writer: asyncio.StreamWriter | None = None
        self.hello: codec.HelloOk | None = None
        self.hello_event = asyncio.Event()
        self.exited = asyncio.Event()
        self.exit_info: dict = {}
        self.stop_requested = False
        self.stop_event = asyncio.Event()
        self.killed_by_us = False
        self.restarts = 0
        self.backoff = 0.1
        self.qemu: subprocess.Popen | None = None
        self.stages: dict[str, float] = {}
        self.own_channels: set[int] = set()
        self.own_callbacks: dict[int, object] = {}
        self.health = HealthState()
        self.health_recorded = False
        self.links: list[socket.socket] = []      # this boot's NIC descriptors (QEMU has its own copies)
        self.link_watch: "select.epoll | None" = None
        self.network_lost: str | None = None
        self.lost_messages: dict[int, str] = {}   # link fd -> what its hang-up means
        self.user_proxy: userproxy.UserProxy | None = None   # published ports of a VM without gvproxy

    # --- database -------------------------------------------------------------

    def db_execute(self, sql: str, params: tuple) -> None:
        """Best effort: the engine reconciles from exit.json if this fails."""
        db = self.launch.get("db")
        if not db:
            return
        try:
            conn = sqlite3.connect(db, timeout=10, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA foreign_keys=ON")   # a removed VM's endpoints and ports go with it
                conn.execute(sql, params)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            print(f"supervisor: database update failed: {exc}", file=sys.stderr)

    # --- QEMU -----------------------------------------------------------------

    def open_links(self) -> dict[str, int]:
        """A fresh descriptor for each NIC that needs one (gvproxy's /connect), before each
        QEMU spawn: a restarted QEMU cannot reuse its predecessor's link."""
        fds: dict[str, int] = {}
        for nic in self.launch.get("nics") or []:
            source = nic.get("fd_source") or {}
            # the driver's module opens it (net/driver.py, NicPlan.fd_source)
            link = importlib.import_module(source["module"]).open_link(source)
            self.links.append(link)
            fds[nic["netdev"]] = link.fileno()
            if source.get("lost"):
                self.lost_messages[link.fileno()] = source["lost"]
        return fds

    def close_links(self) -> None:
        if self.link_watch is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.link_watch.fileno())
            except RuntimeError:
                pass
            self.link_watch.close()
            self.link_watch = None
        for link in self.links:
            link.close()
        self.links = []
        self.lost_messages = {}

    def watch_links(self) -> None:
        """Notice a network helper's death without reading the link (QEMU does): the peer's
        close is an EPOLLRDHUP on our copy of the descriptor. The VM cannot get its network
        back (a QEMU stream netdev cannot be re-attached), so QEMU is ended and the restart
        policy decides; the error says why."""
        if not self.lost_messages:
            return
        self.link_watch = select.epoll()
        for fd in self.lost_messages:
            self.link_watch.register(fd, select.EPOLLRDHUP)

        def on_hangup() -> None:
            events = self.link_watch.poll(0) if self.link_watch is not None else []
            if not events or self.network_lost:
                return
            self.network_lost = f"the VM lost its network: {self.lost_messages.get(events[0][0], 'its link closed')}"
            print(f"supervisor: {self.network_lost}", file=sys.stderr, flush=True)
            self.kill_qemu()

        asyncio.get_running_loop().add_reader(self.link_watch.fileno(), on_hangup)

    async def hold_ports(self) -> None:
        """A VM without gvproxy publishes through a userland proxy held before QEMU starts,
        across restarts, until unpublish() (net/userproxy.py)."""
        target = self.launch.get("userproxy")
        if target and self.launch.get("ports") and self.user_proxy is None:
            self.user_proxy = await userproxy.start(self.launch["ports"], target["guest_ip"])

    def spawn_qemu(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)

        def in_child() -> None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        self.network_lost = None
        try:
            fds = self.open_links()
        except Exception as exc:
            self.close_links()
            raise OSError(f"cannot attach the VM's network: {getattr(exc, 'message', exc)}") from None
        qemu_log = open(self.vm_dir / "qemu.log", "ab")
        try:
            self.qemu = subprocess.Popen(
                substitute_fds(self.launch["argv"], fds),
                stdin=subprocess.DEVNULL,
                stdout=qemu_log,
                stderr=qemu_log,
                preexec_fn=in_child,
                close_fds=True,
                pass_fds=tuple(fds.values()),
            )
        except BaseException:
            self.close_links()
            raise
        finally:
            qemu_log.close()
        self.watch_links()
        self.stages["vmm_spawned"] = time.time()
        ref = ProcessRef.of(self.qemu.pid)
        me = ProcessRef.of(os.getpid())
        atomic_write_json(
            self.vm_dir / "supervisor.json",
            {
                "supervisor": me.to_json() if me else None,
                "qemu": ref.to_json() if ref else None,
                "stages": self.stages,
            },
        )

    def write_stages(self) -> None:
        path = self.vm_dir / "supervisor.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        data["stages"] = self.stages
        atomic_write_json(path, data)

    async def watch_qemu(self) -> int:
        assert self.qemu is not None
        pidfd = os.pidfd_open(self.qemu.pid)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
        try:
            await done
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self.qemu.wait()

    def kill_qemu(self) -> None:
        if self.qemu and self.qemu.poll() is None:
            self.killed_by_us = True
            self.qemu.kill()

    # --- guest side -----------------------------------------------------------

    async def connect_guest(self) -> None:
        path = self.launch["agent_socket"]
        deadline = time.monotonic() + AGENT_CONNECT_TIMEOUT
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline or self.exited.is_set():
                    print("supervisor: QEMU's agent socket never appeared", file=sys.stderr)
                    return
                await asyncio.sleep(0.01)
        self.guest_writer = writer
        greeter = asyncio.ensure_future(self.greet_guest(writer))
        decoder = FrameDecoder(GUEST_TYPES, hunting=True)
        try:
            while data := await reader.read(65536):
                for fr in decoder.feed(data):
                    self.on_guest_frame(fr)
        except (ProtocolError, ConnectionError) as exc:
            print(f"supervisor: agent channel broken: {exc}", file=sys.stderr)
        finally:
            greeter.cancel()
            self.guest_writer = None
            writer.close()

    async def greet_guest(self, writer: asyncio.StreamWriter) -> None:
        """SYNC + HELLO, again every 1.5 s until HELLO_OK (PROTOCOL.md: a stale partial
        frame of an earlier connection can swallow the first greeting)."""
        while not self.hello_event.is_set() and not writer.is_closing():
            writer.write(SYNC + codec.frame(Msg.HELLO, 0, codec.hello_payload()))
            try:
                await asyncio.wait_for(self.hello_event.wait(), 1.5)
            except asyncio.TimeoutError:
                continue

    def send_guest(self, data: bytes) -> bool:
        if self.guest_writer is None or self.guest_writer.is_closing():
            return False
        self.guest_writer.write(data)
        return True

    def on_guest_frame(self, fr: Frame) -> None:
        if fr.channel == 0:
            if fr.type == Msg.HELLO_OK:
                self.hello = codec.HelloOk.parse(fr.payload)
                self.stages.setdefault("agent_hello", time.time())
                self.write_stages()
                # The guest's uptime at hello dates the kernel's start on the host's clock.
                self.own_request(Msg.STATS, b"", on_reply=self.on_boot_stats)
                self.db_execute(
                    "UPDATE vms SET state='running', started_at=? WHERE id=? AND state='starting'",
                    (time.time(), self.vm_id),
                )
                self.hello_event.set()
            elif fr.type == Msg.ERROR:
                err = codec.AgentError.parse(fr.payload)
                print(f"supervisor: guest refused hello: {err.message}", file=sys.stderr)
            return
        if fr.channel in self.own_channels:
            if fr.type in FINAL_TYPES:
                self.own_channels.discard(fr.channel)
                callback = self.own_callbacks.pop(fr.channel, None)
                if callback:
                    callback(fr)
            return
        route = self.routes.get(fr.channel)
        if route is None:
            return  # the client went away; its session is being killed
        client, client_channel = route
        final = fr.type in FINAL_TYPES or (fr.type == Msg.PS_REPLY and not fr.flags & codec.FLAG_MORE)
        if final:
            del self.routes[fr.channel]
            client.channels.pop(client_channel, None)
        client.send(codec.encode_frame(Frame(fr.type, client_channel, fr.payload, fr.flags)))

    def on_boot_stats(self, fr: Frame) -> None:
        if fr.type != Msg.STATS_REPLY:
            return
        for line in fr.payload.decode("ascii", "replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "uptime_ms" and value.isdigit() and "agent_hello" in self.stages:
                self.stages["kernel_started"] = self.stages["agent_hello"] - int(value) / 1000
                self.write_stages()

    def own_request(self, type_: int, payload: bytes, on_reply=None) -> bool:
        channel = self.allocate_channel()
        self.own_channels.add(channel)
        if on_reply:
            self.own_callbacks[channel] = on_reply
        return self.send_guest(codec.frame(type_, channel, payload))

    def allocate_channel(self) -> int:
        while self.next_channel in self.routes or self.next_channel in self.own_channels or self.next_channel == 0:
            self.next_channel = (self.next_channel + 1) & 0xFFFFFFFF
        channel = self.next_channel
        self.next_channel = (self.next_channel + 1) & 0xFFFFFFFF
        return channel

    async def watch_log(self) -> None:
        """Follow the workload log for lifecycle records (health) and keep it under
        its size cap. The one reader of the live file's new bytes on the host side
        that runs as long as the VM does."""
        path = Path(self.launch["workload_log"])
        opts = self.launch.get("log") or {}
        offset, pending = 0, b""
        while not self.exited.is_set():
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                offset += len(data)
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if b" x " in line[:24]:  # only lifecycle records matter here
                        self.on_log_record(line)
                if opts.get("max-size") and rotate_if_needed(path, opts["max-size"], opts.get("max-file", 1)):
                    offset, pending = 0, b""
            except OSError as exc:
                print(f"supervisor: reading the log failed: {exc}", file=sys.stderr)
            await asyncio.sleep(0.5)

    def on_log_record(self, line: bytes) -> None:
        record = parse_line(line)
        if record is None or record.kind != "x":
            return
        word, _, rest = record.payload.partition(b" ")
        if word == b"start":
            self.health.restart()
        elif word == b"health":
            status, _, streak = rest.decode("ascii", "replace").partition(" ")
            if status != self.health.status or not self.health_recorded:
                # the row's column makes each change an event (schema migration 4)
                self.db_execute("UPDATE vms SET health=? WHERE id=?", (status, self.vm_id))
                self.health_recorded = True
            self.health.status = status
            self.health.failing_streak = int(streak) if streak.isdigit() else 0
        elif word == b"health-check":
            self.health.add_check(record.time_ns, rest.decode("utf-8", "replace"))
        else:
            return
        atomic_write_json(self.vm_dir / "health.json", self.health.to_json())

    # --- restart policy -----------------------------------------------------------

    def restart_delay(self, code: int, ran_for: float) -> float | None:
        """Seconds to wait before booting again, or None to stay exited.

        Docker's rules: `no`; `on-failure[:N]` restarts on a non-zero exit, at most N
        times (0: no limit); `always` and `unless-stopped` restart whatever the code.
        None of them restarts a VM the user stopped. Backoff doubles from 0.1 s up to
        60 s and starts over after a run of 10 s or more.
        """
        policy = self.launch.get("restart") or {}
        name = policy.get("policy", "no")
        if self.stop_requested or name == "no":
            return None
        if name == "on-failure":
            limit = int(policy.get("max", 0))
            if code == 0 or (limit and self.restarts >= limit):
                return None
        elif name not in ("always", "unless-stopped"):
            return None
        if ran_for >= 10:
            self.backoff = 0.1
        delay, self.backoff = self.backoff, min(self.backoff * 2, 60.0)
        return delay

    # --- stop -----------------------------------------------------------------

    async def stop(self, sig: int | None, grace_ms: int) -> None:
        """Graceful stop: the guest signals the workload, waits, kills, reboots.

        If the guest never answered (still booting, or hung), QEMU is killed.
        """
        if self.stop_requested:
            return
        self.stop_requested = True
        self.stop_event.set()
        if self.qemu is None or self.qemu.poll() is not None:
            return  # between two boots: the restart loop sees the request
        if not (self.hello and self.own_request(Msg.SHUTDOWN, codec.shutdown_payload(sig, grace_ms))):
            self.kill_qemu()
            return
        try:
            await asyncio.wait_for(self.exited.wait(), grace_ms / 1000 + KILL_MARGIN)
        except asyncio.TimeoutError:
            self.kill_qemu()

    # --- client side ------------------------------------------------------------

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer)
        self.clients.add(client)
        decoder = FrameDecoder(CLIENT_TYPES, hunting=True)
        try:
            while data := await reader.read(65536):
                for fr in decoder.feed(data):
                    await self.on_client_frame(client, fr)
                await writer.drain()
        except (ProtocolError, ConnectionError) as exc:
            client.send(codec.frame(Msg.ERROR, 0, codec.AgentError(codec.ErrorCode.BAD_REQUEST, str(exc)).encode()))
        finally:
            self.clients.discard(client)
            # Sessions of a vanished client would block forever on output credit: end them.
            for client_channel, global_channel in list(client.channels.items()):
                del self.routes[global_channel]
                self.own_channels.add(global_channel)
                self.send_guest(codec.frame(Msg.SIGNAL, global_channel, codec.u32(signal.SIGKILL)))
            writer.close()

    async def on_client_frame(self, client: Client, fr: Frame) -> None:
        if fr.type == Msg.HELLO:
            await self.answer_hello(client)
        elif fr.type == Msg.SV_WAIT:
            client.waiting_exit = True
            if self.exited.is_set():
                self.send_exit(client)
        elif fr.type == Msg.SV_STOP:
            f = codec.Fields(fr.payload)
            sig = f.uint(codec.ShutdownTag.SIGNAL, 4)
            grace = f.uint(codec.ShutdownTag.GRACE_MS, 4, 10000) or 0
            client.send(codec.frame(Msg.OK, fr.channel))
            asyncio.ensure_future(self.stop(sig, grace))
        elif fr.type == Msg.KILL and self.is_final_signal(fr.payload):
            # `hypr kill` with SIGKILL or the stop signal counts as the user stopping
            # the VM: no restart policy brings it back (as Docker).
            self.stop_requested = True
            self.stop_event.set()
            if self.hello is None or self.guest_writer is None:
                self.kill_qemu()
                client.send(codec.frame(Msg.OK, fr.channel))
            else:
                await self.forward_request(client, fr)
        elif fr.type in REQUEST_TYPES:
            if fr.channel == 0 or fr.channel in client.channels:
                self.reply_error(client, fr.channel, codec.ErrorCode.BAD_REQUEST, "channel 0 or already in use")
                return
            if self.hello is None or self.guest_writer is None:
                self.reply_error(client, fr.channel, codec.ErrorCode.BAD_REQUEST, "the VM's agent is not connected")
                return
            await self.forward_request(client, fr)
        elif fr.type in SESSION_TYPES:
            global_channel = client.channels.get(fr.channel)
            if global_channel is None:
                if fr.type != Msg.WINDOW:  # credit for a finished session is harmless
                    self.reply_error(client, fr.channel, codec.ErrorCode.NO_SUCH_SESSION, "no such session")
                return
            self.send_guest(codec.encode_frame(Frame(fr.type, global_channel, fr.payload, fr.flags)))

    async def forward_request(self, client: Client, fr: Frame) -> None:
        global_channel = self.allocate_channel()
        self.routes[global_channel] = (client, fr.channel)
        client.channels[fr.channel] = global_channel
        self.send_guest(codec.encode_frame(Frame(fr.type, global_channel, fr.payload, fr.flags)))

    def is_final_signal(self, payload: bytes) -> bool:
        # Only the 4-byte form (the workload) counts; a KILL with a pid (8 bytes) signals one
        # process of the guest and does not stop the VM.
        try:
            sig = codec.parse_u32(payload, "KILL")
        except ProtocolError:
            return False
        return sig in (signal.SIGKILL, int(self.launch.get("stop_signal", signal.SIGTERM)))

    async def answer_hello(self, client: Client) -> None:
        waiter = asyncio.ensure_future(self.hello_event.wait())
        ender = asyncio.ensure_future(self.exited.wait())
        await asyncio.wait({waiter, ender}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        ender.cancel()
        if self.hello is not None and not self.exited.is_set():
            client.send(SYNC + codec.frame(Msg.HELLO_OK, 0, self.hello.encode()))
        else:
            client.send(SYNC)
            self.send_exit(client)

    def reply_error(self, client: Client, channel: int, code: int, message: str) -> None:
        client.send(codec.frame(Msg.ERROR, channel, codec.AgentError(code, message).encode()))

    def send_exit(self, client: Client) -> None:
        payload = json.dumps(self.exit_info).encode()
        client.send(codec.frame(Msg.SV_EXITED, 0, payload))

    # --- the whole life -----------------------------------------------------------

    async def run(self, ready_fd: int) -> None:
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        control_path = Path(self.launch["control_socket"])
        control_path.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: print(f"supervisor: {ctx.get('message')}: {ctx.get('exception')!r}",
                                                             file=sys.stderr, flush=True))
        server = await asyncio.start_unix_server(self.serve_client, path=str(control_path))
        os.chmod(control_path, 0o600)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop(None, 10000)))
        log_watcher = asyncio.ensure_future(self.watch_log())
        ready: int | None = ready_fd
        while True:
            try:
                await self.hold_ports()
                self.spawn_qemu()
            except OSError as exc:
                what = str(exc) if isinstance(exc, userproxy.PublishError) else f"cannot start QEMU: {exc}"
                if ready is not None:
                    os.write(ready, f"error {what}\n".encode())
                    os.close(ready)
                code, error, status = 125, what, None
                break
            assert self.qemu is not None
            if ready is not None:
                os.write(ready, f"ok {self.qemu.pid}\n".encode())
                os.close(ready)
                ready = None
            booted_at = time.monotonic()
            guest = asyncio.ensure_future(self.connect_guest())
            status = await self.watch_qemu()
            self.close_links()
            guest.cancel()
            self.hello, self.guest_writer = None, None
            self.hello_event.clear()
            code, error = self.exit_code(status)
            delay = self.restart_delay(code, time.monotonic() - booted_at)
            if delay is None:
                break
            # Restart policy: record this run's end, wait the backoff, boot again.
            self.restarts += 1
            self.db_execute(
                "UPDATE vms SET state='restarting', exit_code=?, error=?, restart_count=? WHERE id=? "
                "AND state IN ('starting','running')",
                (code, error, self.restarts, self.vm_id),
            )
            try:
                await asyncio.wait_for(self.stop_event.wait(), delay)
                break  # stopped while waiting to restart
            except asyncio.TimeoutError:
                pass
            self.killed_by_us = False
            self.db_execute(
                "UPDATE vms SET state='starting' WHERE id=? AND state='restarting'", (self.vm_id,)
            )
        self.exited.set()
        log_watcher.cancel()
        self.finish(code, error, status)
        for client in list(self.clients):
            if client.waiting_exit:
                self.send_exit(client)
            try:
                await asyncio.wait_for(client.writer.drain(), 2)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            client.writer.close()
        server.close()
        control_path.unlink(missing_ok=True)
        Path(self.launch["agent_socket"]).unlink(missing_ok=True)
        try:
            self.runtime_dir.rmdir()
        except OSError:
            pass
        if self.launch.get("auto_remove"):
            self.remove_vm()

    def exit_code(self, qemu_status: int) -> tuple[int, str | None]:
        code, error = exit_record(Path(self.launch["workload_log"]))
        if code is not None:
            return code, error
        if self.network_lost:
            return 255, self.network_lost
        if self.killed_by_us:
            return 137, error or "killed: the guest did not stop within its grace period"
        tail = _tail(self.vm_dir / "qemu.log", 3) or _tail(Path(self.launch["console_log"]), 5)
        return 255, error or f"the VM ended without reporting an exit code (QEMU status {qemu_status}): {tail}"

    def finish(self, code: int, error: str | None, qemu_status: int | None) -> None:
        now = time.time()
        self.exit_info = {
            "exit_code": code,
            "error": error,
            "finished_at": now,
            "qemu_status": qemu_status,
            "stopped_by_user": self.stop_requested,
            "restarts": self.restarts,
        }
        atomic_write_json(self.vm_dir / "exit.json", self.exit_info)
        self.unpublish()
        self.db_execute(
            "UPDATE vms SET state='exited', exit_code=?, error=?, finished_at=?, restart_count=? "
            "WHERE id=? AND state IN ('starting','running','stopping','restarting')",
            (code, error, now, self.restarts, self.vm_id),
        )

    def unpublish(self) -> None:
        """The VM ended for good: its forwards close, as Docker's do on stop."""
        if not self.launch.get("ports"):
            return
        if self.user_proxy is not None:
            self.user_proxy.close()
            self.user_proxy = None
        elif not self.launch.get("userproxy"):
            paths = gvproxy.GvproxyPaths.from_json(self.launch["gvproxy"])
            for port in self.launch["ports"]:
                gvproxy.unexpose(paths, port["host_ip"], int(port["host_port"]), port["protocol"])
        self.db_execute("DELETE FROM ports WHERE vm_id=?", (self.vm_id,))

    def remove_vm(self) -> None:
        """--rm: the row and the VM directory go, whether or not a HYPR process watches."""
        import shutil

        self.db_execute("DELETE FROM vms WHERE id=? AND state IN ('exited','removing')", (self.vm_id,))
        shutil.rmtree(self.vm_dir, ignore_errors=True)
        for name in self.launch.get("anonymous_volumes", []):   # Docker's --rm takes them along
            self.db_execute("DELETE FROM volumes WHERE name=? AND anonymous=1", (name,))
            shutil.rmtree(self.vm_dir.parent.parent / "volumes" / name, ignore_errors=True)
        (self.vm_dir.parent.parent / "locks" / f"{self.vm_id}.lock").unlink(missing_ok=True)  # vms.py _lock_path
        if self.launch.get("db"):   # user networks: the VM's TAPs go with it
            from hypr_engine.net.bridge import sweep_data_dir

            try:
                sweep_data_dir(self.launch["db"], Path(self.launch["db"]).parent)
            except Exception as exc:   # best effort: the next engine removal or start sweeps again
                print(f"supervisor: removing the VM's TAPs failed: {exc}", file=sys.stderr)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def main() -> None:
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` dumps every stack to supervisor.log
    vm_dir = Path(sys.argv[1])
    ready_fd = int(sys.argv[2])
    # Fork once more: the engine reaps our parent at once, and we belong to no HYPR process.
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    asyncio.run(Supervisor(vm_dir).run(ready_fd))


if __name__ == "__main__":
    main()
