"""HyprClient's embedded transport: an Engine in this process.

hyprd serves this very class over gRPC (hypr_engine/api/server.py), so each operation
is written once and the two transports cannot drift apart.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Iterable

from hypr_engine._volumes_transport import EmbeddedVolumes
from hypr_engine.agent.client import AgentClient, ExecSession
from hypr_engine.errors import NotFound
from hypr_engine.events import Event, EventBus, Gap
from hypr_engine.logfile import LogRecord, exit_record, parse_line, tail_offset
from hypr_engine.logview import LogView, Page, Positioned
from hypr_engine.models import ExecOptions, ImageInfo, NetworkInfo, RunProgress, VmDetails, VmInfo, VmSpec
from hypr_engine.models import ImageDiskUsage, ImageHistoryEntry, ImagePruneReport
from hypr_engine.proc import ProcessRef
from hypr_engine.state.machine import ACTIVE_STATES, VmState

if TYPE_CHECKING:
    from hypr_engine.oci.registry.progress import Progress

HOLD_SECONDS = 120.0        # how long the log of a --rm VM this transport started stays readable


@dataclass
class _HeldLog:
    vm_id: str
    name: str
    fd: int
    until: float


class LocalExec:
    """A running exec (or an attached workload): ExecSession's interface plus close()."""

    def __init__(self, agent: AgentClient, session: ExecSession) -> None:
        self._agent = agent
        self._session = session

    @property
    def pid(self) -> int:
        return self._session.pid

    @property
    def exit_code(self) -> int | None:
        return self._session.exit_code

    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._session.output()

    async def wait(self) -> int:
        return await self._session.wait()

    async def write(self, data: bytes) -> None:
        await self._session.write(data)

    def close_stdin(self) -> None:
        self._session.close_stdin()

    def resize(self, rows: int, cols: int) -> None:
        self._session.resize(rows, cols)

    def signal(self, sig: int) -> None:
        self._session.signal(sig)

    def __iter__(self):
        """Transitional: `agent, session = await client.exec(...)` (the old tuple) still works,
        both names being this handle; new code uses the handle alone."""
        return iter((self, self))

    async def close(self) -> None:
        await self._agent.close()


class EmbeddedTransport(EmbeddedVolumes):
    mode = "embedded"

    def __init__(self, engine) -> None:
        self.engine = engine
        self._bus: EventBus | None = None
        self._held: dict[str, _HeldLog] = {}
        self._holders: set[asyncio.Task] = set()

    async def close(self) -> None:
        for task in list(self._holders):
            task.cancel()
        for held in self._held.values():
            os.close(held.fd)
        self._held.clear()
        if self._bus is not None:
            await self._bus.close()
        await self.engine.close()

    # --- the logs of --rm VMs ----------------------------------------------------------
    #
    # A `--rm` VM's supervisor deletes its row and directory, log included, as soon as it
    # ends, whether or not anyone watches. `hypr run --rm` reads the log (and the exit
    # code in it) after `start` returns, so a workload that ends at once could take its
    # output with it before the reader opens the file. So this transport opens the log of
    # every --rm VM it starts as soon as the file appears, and keeps it open for a while:
    # `logs` and `wait_vm` read from that descriptor, which outlives the unlink.

    def _hold_log(self, vm: VmInfo) -> None:
        async def hold() -> None:
            path = self.engine.vms.log_path(vm.id)
            deadline = time.monotonic() + 300
            next_check = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    if time.monotonic() >= next_check:  # gave up booting, or already gone
                        next_check = time.monotonic() + 0.5
                        try:
                            if (await self.engine.vms.get(vm.id)).state not in ("created", "starting"):
                                return
                        except NotFound:
                            return
                    await asyncio.sleep(0.01)
                    continue
                self._held[vm.id] = _HeldLog(vm.id, vm.name, fd, time.monotonic() + HOLD_SECONDS)
                return

        task = asyncio.ensure_future(hold())
        self._holders.add(task)
        task.add_done_callback(self._holders.discard)

    def _held_log(self, ref: str) -> _HeldLog | None:
        now = time.monotonic()
        for vm_id, held in list(self._held.items()):
            if held.until < now:
                os.close(held.fd)
                del self._held[vm_id]
        matches = [h for h in self._held.values() if ref in (h.vm_id, h.name) or (len(ref) >= 4 and
                                                                                     h.vm_id.startswith(ref))]
        return matches[0] if len(matches) == 1 else None

    async def _still_active(self, vm_id: str) -> bool:
        try:
            return VmState((await self.engine.vms.get(vm_id)).state) in ACTIVE_STATES
        except NotFound:
            return False

    async def _held_records(self, held: _HeldLog, follow: bool, tail: int | None) -> AsyncIterator[LogRecord]:
        path = Path(f"/proc/self/fd/{held.fd}")
        with open(path, "rb") as f:   # a description of its own: the held one keeps its offset
            f.seek(tail_offset(path, tail) if tail is not None else 0)
            pending = b""
            while True:
                chunk = f.read(1 << 16)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if rec := parse_line(line):
                            yield rec
                    continue
                if not follow or not await self._still_active(held.vm_id):
                    for line in (pending + f.read()).split(b"\n"):
                        if line and (rec := parse_line(line)):
                            yield rec
                    return
                await asyncio.sleep(0.05)

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            self._bus = EventBus(self.engine.db)
        return self._bus

    # --- images ---------------------------------------------------------------------

    async def load_image(self, path: Path) -> list[ImageInfo]:
        return await self.engine.images.load(Path(path))

    async def import_image(self, tarball: Path, ref: str | None) -> ImageInfo:
        return await self.engine.images.import_rootfs(Path(tarball), ref)

    async def list_images(self) -> list[ImageInfo]:
        return await self.engine.images.list()

    async def get_image(self, ref: str) -> ImageInfo:
        image, _ = await self.engine.images.resolve(ref)
        return image

    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        return await self.engine.images.remove(ref, force=force)

    async def tag_image(self, source: str, target: str) -> str:
        return await self.engine.images.tag(source, target)

    async def image_history(self, ref: str) -> list[ImageHistoryEntry]:
        return await self.engine.images.history(ref)

    async def save_images(self, refs: list[str], output: Path) -> list[str]:
        return await self.engine.images.save(list(refs), Path(output))

    async def prune_images(self, *, all: bool = False) -> ImagePruneReport:
        return await self.engine.prune_images(all=all)

    async def image_disk_usage(self) -> ImageDiskUsage:
        return await self.engine.image_disk_usage()

    # --- registries (hypr_engine/oci/registry) ---------------------------------------------

    async def pull_image(self, ref: str, *, platform: str | None = None) -> AsyncIterator["Progress"]:
        async for event in self.engine.registry.pull(ref, platform):
            yield event

    async def push_image(self, ref: str) -> AsyncIterator["Progress"]:
        async for event in self.engine.registry.push(ref):
            yield event

    async def login(self, server: str, username: str, password: str) -> str:
        return await self.engine.registry.login(server, username, password)

    async def logout(self, server: str) -> str:
        return await self.engine.registry.logout(server)

    # --- VMs ------------------------------------------------------------------------------

    async def create_vm(self, spec: VmSpec) -> VmInfo:
        return await self.engine.vms.create(spec)

    async def run_vm(self, spec: VmSpec, *, start: bool = True) -> AsyncIterator[RunProgress]:
        image, _ = await self.engine.images.resolve(spec.image)
        yield RunProgress("image_resolved", time.time(), image.id)
        vm = await self.engine.vms.create(spec)
        yield RunProgress("created", time.time(), vm.id, vm)
        if not start:
            return
        # The root filesystem is built once per image and cached: building it here (rather
        # than inside start) only lets the caller see the step; start finds it ready.
        await self.engine.images.rootfs_for(await self.engine.images.get(vm.image_id))
        yield RunProgress("rootfs_ready", time.time(), "", vm)
        vm = await self.start_vm(vm.id)
        yield RunProgress("started", time.time(), vm.state, vm)

    async def start_vm(self, ref: str) -> VmInfo:
        vm = await self.engine.vms.get(ref)
        if vm.auto_remove:
            self._hold_log(vm)
        return await self.engine.vms.start(vm.id)

    async def list_vms(self, *, all: bool = False) -> list[VmInfo]:
        return await self.engine.vms.list(all=all)

    async def get_vm(self, ref: str) -> VmInfo:
        return await self.engine.vms.get(ref)

    async def vm_ports(self, ref: str) -> list:
        return await self.engine.vms.ports(ref)

    async def inspect_vm(self, ref: str) -> VmDetails:
        vm = await self.engine.vms.get(ref)
        sup = self.engine.vms._supervisor_file(vm.id)
        pids = []
        for key in ("supervisor", "qemu"):
            p = ProcessRef.from_json(sup.get(key))
            pids.append(p.pid if p and p.alive() else None)
        layout = self.engine.layout
        return VmDetails(vm, pids[0], pids[1], str(layout.vm_dir(vm.id)), str(self.engine.vms.log_path(vm.id)),
                         str(layout.vm_runtime_dir(vm.id) / "control.sock"))

    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self.engine.vms.stop(ref, timeout=timeout)

    async def remove_vm(self, ref: str, *, force: bool = False) -> str:
        return await self.engine.vms.remove(ref, force=force)

    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self.engine.vms.restart(ref, timeout=timeout)

    async def kill_vm(self, ref: str, sig: int | str) -> VmInfo:
        return await self.engine.vms.kill(ref, sig)

    async def signal_process(self, ref: str, pid: int, sig: int | str) -> VmInfo:
        return await self.engine.vms.signal_process(ref, pid, sig)

    async def rename_vm(self, ref: str, new_name: str) -> VmInfo:
        return await self.engine.vms.rename(ref, new_name)

    async def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
                   since_ns: int | None = None, until_ns: int | None = None) -> AsyncIterator[LogRecord]:
        held = self._held_log(ref)
        records = (self._held_records(held, follow, tail) if held is not None
                   else self.engine.vms.logs(ref, follow=follow, tail=tail))
        async for rec in records:
            if since_ns is not None and rec.time_ns < since_ns:
                continue
            if until_ns is not None and rec.time_ns >= until_ns:
                if follow:
                    continue
                return
            yield rec

    async def read_logs(self, ref: str, *, offset: int | None = None, index: int | None = None,
                        limit: int = 1000, backwards: bool = False) -> Page:
        vm = await self.engine.vms.get(ref)
        path = self.engine.vms.log_path(vm.id)
        return await asyncio.to_thread(
            lambda: LogView(path).page(offset=offset, index=index, limit=limit, backwards=backwards))

    async def search_logs(self, ref: str, pattern: str, *, regex: bool = False, ignore_case: bool = False,
                          from_offset: int = 0, max_matches: int = 1000, kinds: Iterable[str] = ()
                          ) -> AsyncIterator[tuple[list[Positioned], int, bool]]:
        """Batches of (matches, scanned_to, done)."""
        vm = await self.engine.vms.get(ref)
        path = self.engine.vms.log_path(vm.id)
        max_matches = max_matches if max_matches > 0 else 1000
        view = await asyncio.to_thread(LogView, path)
        kinds = tuple(kinds) or ("o", "O", "e", "E")
        batches = view.search(pattern, regex=regex, ignore_case=ignore_case, from_offset=from_offset, kinds=kinds)
        sentinel = object()
        found = 0
        try:
            while True:
                item = await asyncio.to_thread(next, batches, sentinel)
                if item is sentinel:
                    return
                matches, scanned_to = item
                if found + len(matches) >= max_matches:
                    matches = matches[: max_matches - found]
                    resume = view.offset_of_index(matches[-1].index + 1) if matches else scanned_to
                    yield matches, resume, True
                    return
                found += len(matches)
                done = scanned_to >= view.total_bytes
                yield matches, scanned_to, done
                if done:
                    return
        finally:
            batches.close()

    async def wait_vm(self, ref: str) -> int:
        try:
            return await self.engine.vms.wait(ref)
        except NotFound:
            held = self._held_log(ref)
            code = exit_record(Path(f"/proc/self/fd/{held.fd}"))[0] if held is not None else None
            if code is None:
                raise
            return code

    async def exec(self, ref: str, options: ExecOptions) -> LocalExec:
        return LocalExec(*await self.engine.vms.exec(ref, options))

    async def attach_main(self, ref: str, rows: int, cols: int) -> LocalExec:
        return LocalExec(*await self.engine.vms.attach_main(ref, rows, cols))

    async def copy_to_vm(self, ref: str, src: Path, dest: str, *, archive: bool = False) -> None:
        await self.engine.vms.copy_to(ref, src, dest, archive=archive)

    async def copy_from_vm(self, ref: str, src: str, dest: Path) -> None:
        await self.engine.vms.copy_from(ref, src, dest)

    async def processes(self, ref: str) -> list[dict[str, str]]:
        _, agent = await self.engine.vms.agent(ref)
        try:
            return await agent.ps()
        finally:
            await agent.close()

    async def stats(self, refs: list[str], *, all: bool = False) -> list[dict]:
        if not refs:
            refs = [vm.id for vm in await self.engine.vms.list(all=all)]
        return await self.engine.vms.stats(refs)

    # --- events and the system ----------------------------------------------------------------

    async def events(self, *, since_seq: int | None = None, since_time: float | None = None,
                     until_time: float | None = None, follow: bool = True,
                     filters: Iterable[tuple[str, str]] = ()) -> AsyncIterator[Event | Gap]:
        async for item in self.bus.watch(since_seq=since_seq, since_time=since_time, until_time=until_time,
                                         follow=follow, filters=filters):
            yield item

    async def system_info(self) -> dict:
        return await self.engine.system_info()

    # --- networks ----------------------------------------------------------------------------

    async def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                             internal: bool = False, labels: dict[str, str] | None = None) -> "NetworkInfo":
        return await self.engine.networks.create(name, subnet=subnet, gateway=gateway, internal=internal,
                                                  labels=labels)

    async def list_networks(self) -> "list[NetworkInfo]":
        return await self.engine.networks.list()

    async def get_network(self, ref: str) -> "NetworkInfo":
        return await self.engine.networks.get(ref)

    async def remove_network(self, ref: str, *, force: bool = False) -> str:
        return await self.engine.networks.remove(ref, force=force)

    async def prune_networks(self) -> list[str]:
        return await self.engine.networks.prune()

    async def connect_network(self, network: str, vm: str, *, aliases: list[str] = (),
                              ip: str | None = None) -> "tuple[NetworkInfo, bool]":
        return await self.engine.networks.connect(network, vm, aliases=list(aliases), ip=ip)

    async def disconnect_network(self, network: str, vm: str) -> "tuple[NetworkInfo, bool]":
        return await self.engine.networks.disconnect(network, vm)
