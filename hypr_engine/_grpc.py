"""HyprClient's gRPC transport: hyprd over its Unix socket (API hypr.v1).

It returns the same model objects as the embedded transport (api/convert.py turns
messages back into them) and raises the same HyprError classes with the same messages
and exit codes (the status details carry the class), so a front end cannot tell the
two apart except by `mode`.

- Unary calls have deadlines (`DEADLINES`); a call that runs past one raises Timeout.
- Streams have none (logs -f, events, exec, wait run as long as the user wants) but
  notice a vanished daemon: the socket closes and the call raises Unavailable.
- Before connecting, the socket is checked: it must be a socket owned by root or by
  this user and not world-writable, else the client refuses and says why.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import betterproto2
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from hypr_engine import __version__
from hypr_engine.api import API_MAJOR, API_MINOR, METADATA_KEY, api_version, incompatibility
from hypr_engine._volumes_transport import GrpcVolumes
from hypr_engine.api import convert
from hypr_engine.api._pb.hypr import v1 as pb
from hypr_engine.errors import HyprError, Timeout, Unavailable
from hypr_engine.events import Event, Gap
from hypr_engine.logfile import LogRecord
from hypr_engine.logview import Page, Positioned
from hypr_engine.models import ExecOptions, ImageInfo, NetworkInfo, RunProgress, VmDetails, VmInfo, VmSpec
from hypr_engine.models import ImageDiskUsage, ImageHistoryEntry, ImagePruneReport
from hypr_engine.oci.registry.progress import Progress

HELLO_TIMEOUT = 5.0
QUICK = 30.0            # reads and small changes
SLOW = 900.0            # boots (a first boot builds the root filesystem), loads, imports
DEADLINES = {
    "list": QUICK, "get": QUICK, "inspect": QUICK, "rename": QUICK, "kill": 90.0, "signal_process": 90.0, "processes": 90.0,
    "stats": 120.0, "remove": 120.0, "start": SLOW, "stop": SLOW, "restart": SLOW, "load": 3600.0,
    "import": 3600.0, "networks": 120.0, "info": 60.0, "read_logs": 120.0, "images": QUICK, "remove_image": 300.0, "copy": 3600.0,
}
LOGIN_DEADLINE = 120.0  # a login asks the registry (and maybe its token server)
_CONNECTION_ERRORS = (StreamTerminatedError, ConnectionError, ProtocolError, EOFError, OSError)


def check_socket(path: Path) -> None:
    """Refuse a socket this user should not trust: wrong type, owner or mode."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise Unavailable(f"{path} exists but is not a socket: remove it, or set HYPR_RUNTIME_DIR elsewhere")
    if st.st_uid not in (0, os.geteuid()):
        raise Unavailable(f"refusing hyprd's socket {path}: it is owned by uid {st.st_uid}, "
                          "not by root or by you (someone else may be impersonating hyprd)")
    if st.st_mode & stat.S_IWOTH:
        raise Unavailable(f"refusing hyprd's socket {path}: it is world-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
                          "hyprd creates it 0660")


def _lost(path: Path, exc: BaseException) -> Unavailable:
    what = f" ({exc})" if str(exc) else ""
    return Unavailable(f"lost the connection to hyprd at {path}{what}: it stopped or crashed")


class GrpcTransport(GrpcVolumes):
    mode = "daemon"

    def __init__(self, channel: Channel, socket_path: Path, hello: pb.HelloResponse) -> None:
        self._channel = channel
        self.socket_path = socket_path
        self.hello = hello
        self._metadata = {METADATA_KEY: api_version()}
        self._vms = pb.VmsStub(channel, metadata=self._metadata)
        self._images = pb.ImagesStub(channel, metadata=self._metadata)
        self._system = pb.SystemStub(channel, metadata=self._metadata)
        self._events = pb.EventsStub(channel, metadata=self._metadata)
        self._registry = pb.RegistryStub(channel, metadata=self._metadata)
        self._networks = pb.NetworksStub(channel, metadata=self._metadata)
        self._net = pb.NetStub(channel, metadata=self._metadata)

    @classmethod
    async def connect(cls, socket_path: Path, *, timeout: float = HELLO_TIMEOUT) -> "GrpcTransport":
        check_socket(socket_path)
        channel = Channel(path=str(socket_path), status_details_codec=convert.StatusDetailsCodec())
        try:
            hello = await pb.SystemStub(channel).hello(
                pb.HelloRequest(api_major=API_MAJOR, api_minor=API_MINOR, client_version=__version__),
                timeout=timeout, metadata={METADATA_KEY: api_version()})
        except GRPCError as exc:
            channel.close()
            raise convert.error_from_grpc(exc) from None
        except asyncio.TimeoutError:
            channel.close()
            raise Unavailable(f"hyprd's socket {socket_path} exists but does not answer within {timeout:g} s: "
                              "hyprd is hung or something else listens there") from None
        except PermissionError:
            channel.close()
            raise Unavailable(f"permission denied on hyprd's socket {socket_path}: "
                              "be a member of its group (hypr) or use the owner's account") from None
        except ConnectionRefusedError:
            channel.close()
            raise Unavailable(f"hyprd's socket {socket_path} exists but nothing answers on it (connection refused): "
                              "hyprd is not running; start it, or remove the stale socket to use the "
                              "embedded engine") from None
        except Exception as exc:  # h2 errors and the like: whatever listens there is no hyprd
            channel.close()
            raise Unavailable(f"hyprd's socket {socket_path} exists but does not speak the HYPR API "
                              f"({type(exc).__name__}: {exc})") from None
        problem = incompatibility(API_MAJOR, API_MINOR, hello.api_major, hello.api_minor)
        if problem:
            channel.close()
            raise Unavailable(problem)
        return cls(channel, socket_path, hello)

    async def close(self) -> None:
        self._channel.close()

    # --- call helpers -----------------------------------------------------------------------

    async def _unary(self, call, request, deadline: str | float | None) -> Any:
        timeout = DEADLINES[deadline] if isinstance(deadline, str) else deadline
        try:
            return await call(request, timeout=timeout)
        except GRPCError as exc:
            raise convert.error_from_grpc(exc) from None
        except asyncio.TimeoutError:
            raise Timeout(f"hyprd did not answer within {timeout:g} s") from None
        except _CONNECTION_ERRORS as exc:
            raise _lost(self.socket_path, exc) from None

    async def _stream(self, call, request) -> AsyncIterator[Any]:
        try:
            async for message in call(request):
                yield message
        except GRPCError as exc:
            raise convert.error_from_grpc(exc) from None
        except _CONNECTION_ERRORS as exc:
            raise _lost(self.socket_path, exc) from None

    # --- networking -----------------------------------------------------------------------------

    async def vm_ports(self, ref: str) -> list:
        from hypr_engine.api.net_server import binding_from_pb

        reply = await self._unary(self._net.ports, pb.VmRef(ref=ref), QUICK)
        return [binding_from_pb(p) for p in reply.ports]

    # --- images ---------------------------------------------------------------------------------

    async def load_image(self, path: Path) -> list[ImageInfo]:
        reply = await self._unary(self._images.load, pb.LoadRequest(path=str(Path(path).absolute())), "load")
        return [convert.image_from_pb(i) for i in reply.images]

    async def import_image(self, tarball: Path, ref: str | None) -> ImageInfo:
        reply = await self._unary(self._images.import_,
                                  pb.ImportRequest(path=str(Path(tarball).absolute()), ref=ref), "import")
        return convert.image_from_pb(reply)

    async def list_images(self) -> list[ImageInfo]:
        reply = await self._unary(self._images.list, pb.ListImagesRequest(), "images")
        return [convert.image_from_pb(i) for i in reply.images]

    async def get_image(self, ref: str) -> ImageInfo:
        return convert.image_from_pb(await self._unary(self._images.inspect, pb.ImageRef(ref=ref), "images"))

    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        reply = await self._unary(self._images.remove, pb.RemoveImageRequest(ref=ref, force=force), "remove_image")
        return list(reply.lines)

    async def tag_image(self, source: str, target: str) -> str:
        reply = await self._unary(self._images.tag, pb.TagImageRequest(source=source, target=target), "images")
        return reply.ref

    async def image_history(self, ref: str) -> list[ImageHistoryEntry]:
        reply = await self._unary(self._images.history, pb.ImageRef(ref=ref), "images")
        return [convert.from_pb_fields(ImageHistoryEntry, e) for e in reply.entries]

    async def save_images(self, refs: list[str], output: Path) -> list[str]:
        request = pb.SaveImagesRequest(refs=list(refs), path=str(Path(output).absolute()))
        return list((await self._unary(self._images.save, request, "load")).image_ids)

    async def prune_images(self, *, all: bool = False) -> ImagePruneReport:
        reply = await self._unary(self._images.prune, pb.PruneImagesRequest(all=all), "remove_image")
        return convert.from_pb_fields(ImagePruneReport, reply)

    async def image_disk_usage(self) -> ImageDiskUsage:
        reply = await self._unary(self._images.disk_usage, pb.ImageDiskUsageRequest(), "stats")
        return convert.from_pb_fields(ImageDiskUsage, reply)
    # --- registries ------------------------------------------------------------------------------

    async def pull_image(self, ref: str, *, platform: str | None = None) -> AsyncIterator["Progress"]:
        async for event in self._stream(self._registry.pull, pb.PullRequest(ref=ref, platform=platform)):
            yield convert.progress_from_pb(event)

    async def push_image(self, ref: str) -> AsyncIterator["Progress"]:
        async for event in self._stream(self._registry.push, pb.PushRequest(ref=ref)):
            yield convert.progress_from_pb(event)

    async def login(self, server: str, username: str, password: str) -> str:
        request = pb.LoginRequest(server=server, username=username, password=password)
        return (await self._unary(self._registry.login, request, LOGIN_DEADLINE)).message

    async def logout(self, server: str) -> str:
        return (await self._unary(self._registry.logout, pb.LogoutRequest(server=server), QUICK)).message

    # --- VMs --------------------------------------------------------------------------------------

    async def create_vm(self, spec: VmSpec) -> VmInfo:
        vm = None
        async for step in self.run_vm(spec, start=False):
            vm = step.vm or vm
        assert vm is not None
        return vm

    async def run_vm(self, spec: VmSpec, *, start: bool = True) -> AsyncIterator[RunProgress]:
        request = pb.CreateRequest(spec=convert.spec_to_pb(spec), start=start)
        async for step in self._stream(self._vms.create, request):
            yield RunProgress(step.stage, step.time, step.message, convert.vm_from_pb(step.vm) if step.vm else None)

    async def _vm(self, call, request, deadline) -> VmInfo:
        return convert.vm_from_pb(await self._unary(call, request, deadline))

    async def start_vm(self, ref: str) -> VmInfo:
        return await self._vm(self._vms.start, pb.VmRef(ref=ref), "start")

    async def list_vms(self, *, all: bool = False) -> list[VmInfo]:
        reply = await self._unary(self._vms.list, pb.ListVmsRequest(all=all), "list")
        return [convert.vm_from_pb(v) for v in reply.vms]

    async def get_vm(self, ref: str) -> VmInfo:
        return await self._vm(self._vms.get, pb.VmRef(ref=ref), "get")

    async def inspect_vm(self, ref: str) -> VmDetails:
        d = await self._unary(self._vms.inspect, pb.VmRef(ref=ref), "inspect")
        return VmDetails(convert.vm_from_pb(d.vm), d.supervisor_pid, d.vmm_pid, d.vm_dir, d.log_path,
                         d.control_socket)

    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self._vm(self._vms.stop, pb.StopRequest(ref=ref, timeout=timeout), "stop")

    async def remove_vm(self, ref: str, *, force: bool = False) -> str:
        return (await self._unary(self._vms.remove, pb.RemoveRequest(ref=ref, force=force), "remove")).id

    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self._vm(self._vms.restart, pb.StopRequest(ref=ref, timeout=timeout), "restart")

    async def kill_vm(self, ref: str, sig: int | str) -> VmInfo:
        request = pb.KillRequest(ref=ref)
        if isinstance(sig, int):
            request.signal_number = sig
        else:
            request.signal_name = str(sig)
        return await self._vm(self._vms.kill, request, "kill")

    async def signal_process(self, ref: str, pid: int, sig: int | str) -> VmInfo:
        request = pb.SignalProcessRequest(ref=ref, pid=pid)
        if isinstance(sig, int):
            request.signal_number = sig
        else:
            request.signal_name = str(sig)
        return await self._vm(self._vms.signal_process, request, "signal_process")

    async def rename_vm(self, ref: str, new_name: str) -> VmInfo:
        return await self._vm(self._vms.rename, pb.RenameRequest(ref=ref, new_name=new_name), "rename")

    async def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
                   since_ns: int | None = None, until_ns: int | None = None) -> AsyncIterator[LogRecord]:
        request = pb.LogsRequest(ref=ref, follow=follow, tail=tail, since_ns=since_ns, until_ns=until_ns)
        async for batch in self._stream(self._vms.logs, request):
            for rec in batch.records:
                yield convert.record_from_pb(rec)

    async def read_logs(self, ref: str, *, offset: int | None = None, index: int | None = None,
                        limit: int = 1000, backwards: bool = False) -> Page:
        request = pb.ReadLogsRequest(ref=ref, limit=limit, backwards=backwards)
        if index is not None:
            request.index = index
        elif offset is not None:
            request.offset = offset
        page = await self._unary(self._vms.read_logs, request, "read_logs")
        return Page([_positioned(r) for r in page.records], page.next_offset, page.next_index,
                    page.total_bytes, page.total_records)

    async def search_logs(self, ref: str, pattern: str, *, regex: bool = False, ignore_case: bool = False,
                          from_offset: int = 0, max_matches: int = 1000, kinds: Iterable[str] = ()
                          ) -> AsyncIterator[tuple[list[Positioned], int, bool]]:
        request = pb.SearchLogsRequest(ref=ref, pattern=pattern, regex=regex, ignore_case=ignore_case,
                                       from_offset=from_offset, max_matches=max_matches, kinds=list(kinds))
        async for batch in self._stream(self._vms.search_logs, request):
            yield [_positioned(m) for m in batch.matches], batch.scanned_to, batch.done

    async def wait_vm(self, ref: str) -> int:
        # No deadline: waiting is the point. A vanished daemon still ends the call.
        return (await self._unary(self._vms.wait, pb.VmRef(ref=ref), None)).exit_code

    async def exec(self, ref: str, options: ExecOptions) -> "GrpcExec":
        return await GrpcExec.start(self, pb.ExecStart(ref=ref, options=convert.exec_options_to_pb(options)))

    async def attach_main(self, ref: str, rows: int, cols: int) -> "GrpcExec":
        options = pb.ExecOptions(rows=rows, cols=cols)
        return await GrpcExec.start(self, pb.ExecStart(ref=ref, options=options, attach_main=True))

    async def copy_to_vm(self, ref: str, src: Path, dest: str, *, archive: bool = False) -> None:
        # hyprd runs on this host and reads the path itself (as for load): send it absolute.
        request = pb.CopyToVmRequest(ref=ref, host_path=str(Path(src).absolute()), vm_path=dest, archive=archive)
        await self._unary(self._vms.copy_to_vm, request, "copy")

    async def copy_from_vm(self, ref: str, src: str, dest: Path) -> None:
        request = pb.CopyFromVmRequest(ref=ref, vm_path=src, host_path=str(Path(dest).absolute()))
        await self._unary(self._vms.copy_from_vm, request, "copy")

    async def processes(self, ref: str) -> list[dict[str, str]]:
        reply = await self._unary(self._vms.processes, pb.VmRef(ref=ref), "processes")
        return [convert.process_from_pb(p) for p in reply.processes]

    async def stats(self, refs: list[str], *, all: bool = False) -> list[dict]:
        reply = await self._unary(self._vms.stats, pb.StatsRequest(refs=list(refs), all=all), "stats")
        return [convert.stats_from_pb(s) for s in reply.stats]

    # --- events and the system ---------------------------------------------------------------------

    async def events(self, *, since_seq: int | None = None, since_time: float | None = None,
                     until_time: float | None = None, follow: bool = True,
                     filters: Iterable[tuple[str, str]] = ()) -> AsyncIterator[Event | Gap]:
        request = pb.WatchEventsRequest(since_seq=since_seq, since_time=since_time, until_time=until_time,
                                        follow=follow, filters=[pb.EventFilter(key=k, value=v) for k, v in filters])
        async for message in self._stream(self._events.watch, request):
            yield convert.event_from_pb(message)

    async def system_info(self) -> dict:
        import json

        reply = await self._unary(self._system.info, pb.InfoRequest(), "info")
        info = json.loads(reply.report_json) if reply.report_json else {}
        if reply.daemon is not None:
            d = reply.daemon
            info["daemon"] = {"version": d.version, "api_version": d.api_version, "pid": d.pid,
                              "started_at": d.started_at, "uptime_s": d.uptime_s, "socket": d.socket}
        return info

    # --- networks ------------------------------------------------------------------------------

    async def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                             internal: bool = False, labels: dict[str, str] | None = None) -> "NetworkInfo":
        from hypr_engine.api.networks import network_from_pb

        request = pb.CreateNetworkRequest(name=name, subnet=subnet, gateway=gateway, internal=internal,
                                          labels=dict(labels or {}))
        return network_from_pb(await self._unary(self._networks.create, request, "networks"))

    async def list_networks(self) -> "list[NetworkInfo]":
        from hypr_engine.api.networks import network_from_pb

        reply = await self._unary(self._networks.list, pb.ListNetworksRequest(), "networks")
        return [network_from_pb(n) for n in reply.networks]

    async def get_network(self, ref: str) -> "NetworkInfo":
        from hypr_engine.api.networks import network_from_pb

        return network_from_pb(await self._unary(self._networks.inspect, pb.NetworkRef(ref=ref), "networks"))

    async def remove_network(self, ref: str, *, force: bool = False) -> str:
        request = pb.RemoveNetworkRequest(ref=ref, force=force)
        return (await self._unary(self._networks.remove, request, "networks")).name

    async def prune_networks(self) -> list[str]:
        return list((await self._unary(self._networks.prune, pb.PruneNetworksRequest(), "networks")).removed)

    async def connect_network(self, network: str, vm: str, *, aliases: list[str] = (),
                              ip: str | None = None) -> "tuple[NetworkInfo, bool]":
        from hypr_engine.api.networks import network_from_pb

        request = pb.ConnectNetworkRequest(network=network, vm=vm, aliases=list(aliases), ip=ip)
        reply = await self._unary(self._networks.connect, request, "networks")
        return network_from_pb(reply.network), reply.at_next_start

    async def disconnect_network(self, network: str, vm: str) -> "tuple[NetworkInfo, bool]":
        from hypr_engine.api.networks import network_from_pb

        request = pb.DisconnectNetworkRequest(network=network, vm=vm)
        reply = await self._unary(self._networks.disconnect, request, "networks")
        return network_from_pb(reply.network), reply.at_next_start


def _positioned(message: pb.PositionedRecord) -> Positioned:
    return Positioned(message.offset, message.index, convert.record_from_pb(message.record or pb.LogRecord()))


_END = object()


class GrpcExec:
    """A process running in a VM through hyprd: ExecSession's interface plus close().

    One task holds the bidirectional call; output waits in a small queue (so a reader
    that stops reading stops the call, and in turn the guest, through flow control);
    input (stdin, close, resize, signal) is sent in order by a second task.
    """

    OUTPUT_QUEUE = 16
    CHUNK = 64 * 1024

    def __init__(self, transport: GrpcTransport, start: pb.ExecStart) -> None:
        self._transport = transport
        self._start = start
        self._out: asyncio.Queue[Any] = asyncio.Queue(self.OUTPUT_QUEUE)
        self._in: asyncio.Queue[tuple[pb.ExecInput, asyncio.Future | None]] = asyncio.Queue()
        self.pid: int | None = None
        self.exit_code: int | None = None
        self._task: asyncio.Task | None = None
        self._finished = False

    @classmethod
    async def start(cls, transport: GrpcTransport, start: pb.ExecStart) -> "GrpcExec":
        session = cls(transport, start)
        session._task = asyncio.ensure_future(session._run())
        first = await session._out.get()
        if isinstance(first, BaseException):
            await session.close()
            raise first
        field, value = betterproto2.which_one_of(first, "output")
        if field != "started":
            await session.close()
            raise Unavailable(f"hyprd did not start the exec session (it sent {field or 'nothing'})")
        session.pid = value
        return session

    async def _run(self) -> None:
        path = self._transport.socket_path
        try:
            async with self._transport._channel.request(
                "/hypr.v1.Vms/Exec", Cardinality.STREAM_STREAM, pb.ExecInput, pb.ExecOutput,
                metadata=self._transport._metadata,
            ) as stream:
                await stream.send_message(pb.ExecInput(start=self._start))
                sender = asyncio.ensure_future(self._send(stream))
                try:
                    async for message in stream:
                        await self._out.put(message)
                finally:
                    sender.cancel()
                    try:
                        await sender
                    except (asyncio.CancelledError, Exception):
                        pass
                await stream.end()
            await self._out.put(_END)
        except asyncio.CancelledError:
            raise
        except GRPCError as exc:
            await self._out.put(convert.error_from_grpc(exc))
        except _CONNECTION_ERRORS as exc:
            await self._out.put(_lost(path, exc))
        except Exception as exc:  # never leave the reader waiting
            await self._out.put(Unavailable(f"exec through hyprd failed: {type(exc).__name__}: {exc}"))

    async def _send(self, stream) -> None:
        while True:
            message, done = await self._in.get()
            try:
                await stream.send_message(message)
            except BaseException as exc:
                if done is not None and not done.done():
                    done.set_exception(_lost(self._transport.socket_path, exc)
                                       if isinstance(exc, Exception) else exc)
                raise
            if done is not None and not done.done():
                done.set_result(None)

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """Yields ("stdout"|"stderr", data) until the process exits; then exit_code is set."""
        while not self._finished:
            item = await self._out.get()
            if item is _END:
                self._finished = True
                if self.exit_code is None:
                    raise Unavailable("the exec session ended without an exit code")
                return
            if isinstance(item, HyprError):
                self._finished = True
                raise item
            field, value = betterproto2.which_one_of(item, "output")
            if field == "stdout":
                yield "stdout", value
            elif field == "stderr":
                yield "stderr", value
            elif field == "exit_code":
                self.exit_code = value

    async def wait(self) -> int:
        async for _ in self.output():
            pass
        assert self.exit_code is not None
        return self.exit_code

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        last = None
        while view:
            last = loop.create_future()
            self._in.put_nowait((pb.ExecInput(stdin=bytes(view[: self.CHUNK])), last))
            view = view[self.CHUNK:]
        if last is not None:
            await last

    def close_stdin(self) -> None:
        self._in.put_nowait((pb.ExecInput(close_stdin=True), None))

    def resize(self, rows: int, cols: int) -> None:
        self._in.put_nowait((pb.ExecInput(resize=pb.Resize(rows=rows, cols=cols)), None))

    def signal(self, sig: int) -> None:
        self._in.put_nowait((pb.ExecInput(signal=int(sig)), None))

    def __iter__(self):
        """Transitional: `agent, session = await client.exec(...)` (the old tuple) still works,
        both names being this handle; new code uses the handle alone."""
        return iter((self, self))

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                pass
