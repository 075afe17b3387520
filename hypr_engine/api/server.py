"""The services hyprd serves: hypr.v1's Vms, Images, System and Events.

Each call converts its request, calls the embedded transport over hyprd's one engine
(the very code an embedded `hypr` runs, _embedded.py), and converts the answer back.

One middleware (`install`, a grpclib RecvRequest listener) wraps every handler:
- it refuses a call whose `hypr-api-version` metadata names another major version;
- it turns a HyprError into the gRPC status its class names (errors.py) with an
  ErrorInfo in the status details (class, detail lines, exit code), and anything
  else into INTERNAL with one line, logging the traceback here, never sending it;
- it logs each call with the caller's uid (SO_PEERCRED) and how long it took.

Operations that change state run detached from the call: a client that goes away (a
deadline, Ctrl-C, a dropped connection) does not cancel a boot or a removal half-way;
hyprd finishes it and the state stays consistent.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import struct
import time
from typing import Any, AsyncIterator, Awaitable, TypeVar

import betterproto2
from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError

from hypr_engine import __version__, errors
from hypr_engine._embedded import EmbeddedTransport
from hypr_engine.api import API_MAJOR, API_MINOR, METADATA_KEY, api_version, incompatibility, parse_version
from hypr_engine.api import convert
from hypr_engine.api._pb.hypr import v1 as pb

log = logging.getLogger("hyprd.api")
T = TypeVar("T")
LOG_BATCH_RECORDS = 512
LOG_BATCH_BYTES = 256 * 1024
MUTATING = {"Create", "Start", "Stop", "Restart", "Kill", "Remove", "Rename", "Load", "Import", "CopyToVm",
            "CopyFromVm", "Tag", "Save", "Prune", "Connect", "Disconnect"}


class DaemonState:
    """What the services share: the engine (through its embedded transport) and the daemon's facts."""

    def __init__(self, transport: EmbeddedTransport, socket_path: str) -> None:
        self.local = transport
        self.socket_path = socket_path
        self.started_at = time.time()
        self.serving = True
        self.tasks: set[asyncio.Task] = set()

    def detach(self, coro: Awaitable[T]) -> "asyncio.Future[T]":
        """Run `coro` to its end even if the caller is cancelled; await the result shielded."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_consume)
        return asyncio.shield(task)

    async def drain(self, timeout: float) -> None:
        """Give detached operations up to `timeout` seconds to finish (shutdown)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)


def _consume(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a detached failure whose caller left is only logged
        if task.exception() is not None and not isinstance(task.exception(), errors.HyprError):
            log.error("detached operation failed", exc_info=task.exception())


async def _detached_stream(state: DaemonState, agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Relay a generator that runs to its end even if the caller goes away."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    async def pump() -> None:
        try:
            async for item in agen:
                queue.put_nowait(item)
        except BaseException as exc:
            queue.put_nowait(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            queue.put_nowait(done)

    state.detach(pump())
    while True:
        item = await queue.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


# --- Vms ---------------------------------------------------------------------------------

class VmsService(pb.VmsBase):
    def __init__(self, state: DaemonState) -> None:
        self.s = state

    async def create(self, message: pb.CreateRequest) -> AsyncIterator[pb.CreateProgress]:
        spec = convert.spec_from_pb(message.spec)
        async for step in _detached_stream(self.s, self.s.local.run_vm(spec, start=message.start)):
            yield pb.CreateProgress(stage=step.stage, time=step.time, message=step.message,
                                    vm=convert.vm_to_pb(step.vm) if step.vm else None)

    async def start(self, message: pb.VmRef) -> pb.Vm:
        return convert.vm_to_pb(await self.s.detach(self.s.local.start_vm(message.ref)))

    async def stop(self, message: pb.StopRequest) -> pb.Vm:
        return convert.vm_to_pb(await self.s.detach(self.s.local.stop_vm(message.ref, timeout=message.timeout)))

    async def restart(self, message: pb.StopRequest) -> pb.Vm:
        return convert.vm_to_pb(await self.s.detach(self.s.local.restart_vm(message.ref, timeout=message.timeout)))

    async def kill(self, message: pb.KillRequest) -> pb.Vm:
        field, value = betterproto2.which_one_of(message, "signal")
        sig = value if field else 9
        return convert.vm_to_pb(await self.s.detach(self.s.local.kill_vm(message.ref, sig)))

    async def signal_process(self, message: pb.SignalProcessRequest) -> pb.Vm:
        field, value = betterproto2.which_one_of(message, "signal")
        sig = value if field else 9
        return convert.vm_to_pb(await self.s.detach(self.s.local.signal_process(message.ref, message.pid, sig)))

    async def remove(self, message: pb.RemoveRequest) -> pb.RemoveResponse:
        return pb.RemoveResponse(id=await self.s.detach(self.s.local.remove_vm(message.ref, force=message.force)))

    async def rename(self, message: pb.RenameRequest) -> pb.Vm:
        return convert.vm_to_pb(await self.s.detach(self.s.local.rename_vm(message.ref, message.new_name)))

    async def list(self, message: pb.ListVmsRequest) -> pb.ListVmsResponse:
        return pb.ListVmsResponse(vms=[convert.vm_to_pb(v) for v in await self.s.local.list_vms(all=message.all)])

    async def get(self, message: pb.VmRef) -> pb.Vm:
        return convert.vm_to_pb(await self.s.local.get_vm(message.ref))

    async def inspect(self, message: pb.VmRef) -> pb.VmDetails:
        d = await self.s.local.inspect_vm(message.ref)
        return pb.VmDetails(vm=convert.vm_to_pb(d.vm), supervisor_pid=d.supervisor_pid, vmm_pid=d.vmm_pid,
                            vm_dir=d.vm_dir, log_path=d.log_path, control_socket=d.control_socket)

    async def logs(self, message: pb.LogsRequest) -> AsyncIterator[pb.LogBatch]:
        """Records are read by one task and sent in batches: whatever has accumulated while
        the previous batch was being sent (bulk reads go fast, a follower gets each line
        as it comes)."""
        queue: asyncio.Queue[Any] = asyncio.Queue(4 * LOG_BATCH_RECORDS)
        end = object()

        async def read() -> None:
            try:
                async for rec in self.s.local.logs(message.ref, follow=message.follow, tail=message.tail,
                                                   since_ns=message.since_ns, until_ns=message.until_ns):
                    await queue.put(rec)
                await queue.put(end)
            except Exception as exc:
                await queue.put(exc)

        reader = asyncio.ensure_future(read())
        try:
            finished = False
            while not finished:
                item = await queue.get()
                batch: list[pb.LogRecord] = []
                size = 0
                while True:
                    if item is end:
                        finished = True
                        break
                    if isinstance(item, Exception):
                        raise item
                    batch.append(convert.record_to_pb(item))
                    size += len(item.payload)
                    if len(batch) >= LOG_BATCH_RECORDS or size >= LOG_BATCH_BYTES or queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    yield pb.LogBatch(records=batch)
        finally:
            reader.cancel()

    async def read_logs(self, message: pb.ReadLogsRequest) -> pb.LogPage:
        field, value = betterproto2.which_one_of(message, "start")
        page = await self.s.local.read_logs(
            message.ref, offset=value if field == "offset" else None, index=value if field == "index" else None,
            limit=message.limit or 1000, backwards=message.backwards)
        return pb.LogPage(records=[_positioned(r) for r in page.records], next_offset=page.next_offset,
                          next_index=page.next_index, total_bytes=page.total_bytes, total_records=page.total_records)

    async def search_logs(self, message: pb.SearchLogsRequest) -> AsyncIterator[pb.LogMatches]:
        async for matches, scanned_to, done in self.s.local.search_logs(
                message.ref, message.pattern, regex=message.regex, ignore_case=message.ignore_case,
                from_offset=message.from_offset, max_matches=message.max_matches or 1000, kinds=message.kinds):
            yield pb.LogMatches(matches=[_positioned(m) for m in matches], scanned_to=scanned_to, done=done)

    async def wait(self, message: pb.VmRef) -> pb.WaitResponse:
        return pb.WaitResponse(exit_code=await self.s.local.wait_vm(message.ref))

    async def exec(self, messages: AsyncIterator[pb.ExecInput]) -> AsyncIterator[pb.ExecOutput]:
        first = await anext(messages, None)
        field, start = betterproto2.which_one_of(first, "input") if first is not None else (None, None)
        if field != "start":
            raise errors.InvalidArgument("the first message of Exec must be `start`")
        options = convert.exec_options_from_pb(start.options)
        if start.attach_main:
            session = await self.s.local.attach_main(start.ref, options.rows, options.cols)
        else:
            session = await self.s.local.exec(start.ref, options)

        async def inputs() -> None:
            async for message in messages:
                kind, value = betterproto2.which_one_of(message, "input")
                if kind == "stdin":
                    await session.write(value)
                elif kind == "close_stdin":
                    session.close_stdin()
                elif kind == "resize":
                    session.resize(value.rows, value.cols)
                elif kind == "signal":
                    session.signal(value)

        pump = asyncio.ensure_future(inputs())
        try:
            yield pb.ExecOutput(started=session.pid or 0)
            async for stream, data in session.output():
                yield pb.ExecOutput(stdout=data) if stream == "stdout" else pb.ExecOutput(stderr=data)
            yield pb.ExecOutput(exit_code=session.exit_code if session.exit_code is not None else 255)
        finally:
            pump.cancel()
            await session.close()

    async def processes(self, message: pb.VmRef) -> pb.ProcessList:
        return pb.ProcessList(processes=[convert.process_to_pb(p) for p in await self.s.local.processes(message.ref)])

    async def stats(self, message: pb.StatsRequest) -> pb.StatsResponse:
        samples = await self.s.local.stats(list(message.refs), all=message.all)
        return pb.StatsResponse(stats=[convert.stats_to_pb(s) for s in samples])

    async def stream_stats(self, message: pb.StatsRequest) -> AsyncIterator[pb.StatsResponse]:
        interval = max(message.interval_ms or 1000, 200) / 1000
        while True:
            started = time.monotonic()
            yield await self.stats(message)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


    async def copy_to_vm(self, message: pb.CopyToVmRequest) -> pb.CopyResponse:
        src = _absolute(message.host_path)
        await self.s.detach(self.s.local.copy_to_vm(message.ref, src, message.vm_path, archive=message.archive))
        return pb.CopyResponse()

    async def copy_from_vm(self, message: pb.CopyFromVmRequest) -> pb.CopyResponse:
        dest = _absolute(message.host_path)
        await self.s.detach(self.s.local.copy_from_vm(message.ref, message.vm_path, dest))
        return pb.CopyResponse()


def _positioned(p) -> pb.PositionedRecord:
    return pb.PositionedRecord(offset=p.offset, index=p.index, record=convert.record_to_pb(p.record))


# --- Images ---------------------------------------------------------------------------------

class ImagesService(pb.ImagesBase):
    def __init__(self, state: DaemonState) -> None:
        self.s = state

    async def load(self, message: pb.LoadRequest) -> pb.LoadResponse:
        path = _absolute(message.path)
        images = await self.s.detach(self.s.local.load_image(path))
        return pb.LoadResponse(images=[convert.image_to_pb(i) for i in images])

    async def import_(self, message: pb.ImportRequest) -> pb.Image:
        path = _absolute(message.path)
        return convert.image_to_pb(await self.s.detach(self.s.local.import_image(path, message.ref)))

    async def list(self, message: pb.ListImagesRequest) -> pb.ListImagesResponse:
        return pb.ListImagesResponse(images=[convert.image_to_pb(i) for i in await self.s.local.list_images()])

    async def inspect(self, message: pb.ImageRef) -> pb.Image:
        return convert.image_to_pb(await self.s.local.get_image(message.ref))

    async def remove(self, message: pb.RemoveImageRequest) -> pb.RemoveImageResponse:
        lines = await self.s.detach(self.s.local.remove_image(message.ref, force=message.force))
        return pb.RemoveImageResponse(lines=lines)

    async def tag(self, message: pb.TagImageRequest) -> pb.TagImageResponse:
        return pb.TagImageResponse(ref=await self.s.local.tag_image(message.source, message.target))

    async def history(self, message: pb.ImageRef) -> pb.ImageHistoryResponse:
        entries = await self.s.local.image_history(message.ref)
        return pb.ImageHistoryResponse(entries=[convert.to_pb_fields(e, pb.ImageHistoryEntry()) for e in entries])

    async def save(self, message: pb.SaveImagesRequest) -> pb.SaveImagesResponse:
        path = _absolute(message.path)
        ids = await self.s.detach(self.s.local.save_images(list(message.refs), path))
        return pb.SaveImagesResponse(image_ids=ids)

    async def prune(self, message: pb.PruneImagesRequest) -> pb.ImagePruneReport:
        report = await self.s.detach(self.s.local.prune_images(all=message.all))
        return convert.to_pb_fields(report, pb.ImagePruneReport())

    async def disk_usage(self, message: pb.ImageDiskUsageRequest) -> pb.ImageDiskUsage:
        return convert.to_pb_fields(await self.s.local.image_disk_usage(), pb.ImageDiskUsage())


def _absolute(path: str):
    from pathlib import Path

    if not path.startswith("/"):
        raise errors.InvalidArgument(f"hyprd needs an absolute path, got {path!r}")
    return Path(path)


# --- System -----------------------------------------------------------------------------------

class SystemService(pb.SystemBase):
    def __init__(self, state: DaemonState) -> None:
        self.s = state

    async def hello(self, message: pb.HelloRequest) -> pb.HelloResponse:
        problem = incompatibility(message.api_major, message.api_minor, API_MAJOR, API_MINOR)
        if problem:
            log.warning("refused a client: %s", problem)
            raise _version_error(problem)
        return pb.HelloResponse(api_major=API_MAJOR, api_minor=API_MINOR, daemon_version=__version__,
                                pid=os.getpid(), started_at=self.s.started_at, socket=self.s.socket_path,
                                data_dir=str(self.s.local.engine.layout.data))

    async def info(self, message: pb.InfoRequest) -> pb.SystemInfo:
        report = await self.s.local.system_info()
        now = time.time()
        daemon = pb.DaemonInfo(version=__version__, api_version=api_version(), pid=os.getpid(),
                               started_at=self.s.started_at, uptime_s=now - self.s.started_at,
                               socket=self.s.socket_path)
        accel = report.get("accelerator") or {}
        vms = report.get("vms") or {}
        return pb.SystemInfo(
            version=str(report.get("version", "")), mode=str(report.get("mode", "")),
            data_dir=str(report.get("data_dir", "")), runtime_dir=str(report.get("runtime_dir", "")),
            accelerator=str(accel.get("name", "")), accelerator_reason=str(accel.get("reason", "")),
            vms_total=int(vms.get("total", 0)), vms_running=int(vms.get("running", 0)),
            images=int(report.get("images", 0)), daemon=daemon, report_json=json.dumps(report, default=str))

    async def health(self, message: pb.HealthRequest) -> pb.HealthResponse:
        vms = await self.s.local.list_vms(all=False)
        status = pb.HealthResponseStatus.SERVING if self.s.serving else pb.HealthResponseStatus.NOT_SERVING
        return pb.HealthResponse(status=status, uptime_s=time.time() - self.s.started_at,
                                 vms_running=sum(v.state == "running" for v in vms))


def _version_error(problem: str) -> GRPCError:
    return GRPCError(Status.FAILED_PRECONDITION, problem, pb.ErrorInfo(kind="Unavailable", exit_code=125))


# --- Events ------------------------------------------------------------------------------------

class EventsService(pb.EventsBase):
    def __init__(self, state: DaemonState) -> None:
        self.s = state

    async def watch(self, message: pb.WatchEventsRequest) -> AsyncIterator[pb.EventMessage]:
        from hypr_engine.events import FILTER_KEYS

        filters = [(f.key, f.value) for f in message.filters]
        for key, _ in filters:
            if key not in FILTER_KEYS:
                raise errors.InvalidArgument(f"invalid event filter key {key!r}: use {', '.join(FILTER_KEYS)}")
        async for item in self.s.local.events(since_seq=message.since_seq, since_time=message.since_time,
                                              until_time=message.until_time, follow=message.follow,
                                              filters=filters):
            yield convert.event_to_pb(item)


# --- the middleware ------------------------------------------------------------------------------

current_peer_uid: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_peer_uid", default=None)


def _peer_uid(peer) -> int | None:
    try:
        sock = peer._transport.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    except Exception:
        return None


def install(server, state: DaemonState) -> None:
    """Wrap every handler of `server` (see the module's docstring)."""

    async def on_request(event: RecvRequest) -> None:
        raw = event.metadata.get(METADATA_KEY) if event.metadata else None
        if raw is not None:
            version = parse_version(str(raw))
            problem = (f"unreadable {METADATA_KEY} metadata {raw!r}" if version is None
                       else incompatibility(version[0], version[1], API_MAJOR, API_MINOR))
            if problem:
                log.warning("refused a client calling %s: %s", event.method_name, problem)
                raise _version_error(problem)
        func = event.method_func
        name = event.method_name
        uid = _peer_uid(event.peer)

        async def handle(stream) -> None:
            current_peer_uid.set(uid)
            started = time.monotonic()
            outcome = "OK"
            try:
                await func(stream)
            except errors.HyprError as exc:
                outcome = f"{type(exc).__name__}: {exc.message}"
                raise convert.error_to_grpc(exc) from None
            except GRPCError as exc:
                outcome = exc.status.name
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except Exception as exc:
                outcome = f"internal error: {type(exc).__name__}"
                log.exception("%s failed", name)
                raise GRPCError(Status.INTERNAL, f"internal error in hyprd: {type(exc).__name__}: {exc}",
                                pb.ErrorInfo(kind="HyprError", exit_code=125)) from None
            finally:
                level = logging.INFO if name.rsplit("/", 1)[-1] in MUTATING else logging.DEBUG
                log.log(level, "%s uid=%s %.3fs %s", name, uid, time.monotonic() - started, outcome)

        event.method_func = handle

    listen(server, RecvRequest, on_request)


def services(state: DaemonState) -> list:
    from hypr_engine.api.net_server import NetService
    from hypr_engine.api.networks import NetworksService
    from hypr_engine.api.registry_service import RegistryService
    from hypr_engine.api.volumes_api import SystemSpaceService, VolumesService

    return [VmsService(state), ImagesService(state), SystemService(state), EventsService(state),
            RegistryService(state), VolumesService(state), SystemSpaceService(state), NetService(state),
            NetworksService(state)]
