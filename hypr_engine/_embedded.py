"""HyprClient's embedded transport: an Engine in this process.

hyprd serves this very class over gRPC (hypr_engine/api/server.py), so each operation
is written once and the two transports cannot drift apart.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator, Iterable

from hypr_engine.agent.client import AgentClient, ExecSession
from hypr_engine.events import Event, EventBus, Gap
from hypr_engine.logfile import LogRecord
from hypr_engine.logview import LogView, Page, Positioned
from hypr_engine.models import ExecOptions, ImageInfo, RunProgress, VmDetails, VmInfo, VmSpec
from hypr_engine.proc import ProcessRef


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


class EmbeddedTransport:
    mode = "embedded"

    def __init__(self, engine) -> None:
        self.engine = engine
        self._bus: EventBus | None = None

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()
        await self.engine.close()

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
        in_use = {v.image_id for v in await self.engine.vms.list()}
        return await self.engine.images.remove(ref, force=force, in_use=in_use)

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
        vm = await self.engine.vms.start(vm.id)
        yield RunProgress("started", time.time(), vm.state, vm)

    async def start_vm(self, ref: str) -> VmInfo:
        return await self.engine.vms.start(ref)

    async def list_vms(self, *, all: bool = False) -> list[VmInfo]:
        return await self.engine.vms.list(all=all)

    async def get_vm(self, ref: str) -> VmInfo:
        return await self.engine.vms.get(ref)

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

    async def rename_vm(self, ref: str, new_name: str) -> VmInfo:
        return await self.engine.vms.rename(ref, new_name)

    async def logs(self, ref: str, *, follow: bool = False, tail: int | None = None,
                   since_ns: int | None = None, until_ns: int | None = None) -> AsyncIterator[LogRecord]:
        async for rec in self.engine.vms.logs(ref, follow=follow, tail=tail):
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
        return await self.engine.vms.wait(ref)

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
