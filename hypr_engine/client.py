"""HyprClient: the one async interface both front ends use.

Two transports will implement it: the embedded engine (here, now) and gRPC to
`hyprd` (the daemon issue). Front ends call only these methods and receive
only the plain data of models.py, so their output is the same either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from hypr_engine.agent.client import AgentClient, ExecSession
from hypr_engine.logfile import LogRecord
from hypr_engine.models import ExecOptions, ImageInfo, VmInfo, VmSpec
from hypr_engine.paths import Layout


class HyprClient:
    """Embedded transport: an Engine in this process."""

    def __init__(self, engine) -> None:
        self._engine = engine

    @classmethod
    async def connect(cls, layout: Layout | None = None) -> "HyprClient":
        from hypr_engine.engine import Engine

        return cls(await Engine.open(layout))

    async def close(self) -> None:
        await self._engine.close()

    async def __aenter__(self) -> "HyprClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # images
    async def load_image(self, path: Path) -> list[ImageInfo]:
        return await self._engine.images.load(path)

    async def import_image(self, tarball: Path, ref: str | None) -> ImageInfo:
        return await self._engine.images.import_rootfs(tarball, ref)

    async def list_images(self) -> list[ImageInfo]:
        return await self._engine.images.list()

    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        in_use = {v.image_id for v in await self._engine.vms.list()}
        return await self._engine.images.remove(ref, force=force, in_use=in_use)

    # VMs
    async def create_vm(self, spec: VmSpec) -> VmInfo:
        return await self._engine.vms.create(spec)

    async def start_vm(self, ref: str) -> VmInfo:
        return await self._engine.vms.start(ref)

    async def list_vms(self, *, all: bool = False) -> list[VmInfo]:
        return await self._engine.vms.list(all=all)

    async def get_vm(self, ref: str) -> VmInfo:
        return await self._engine.vms.get(ref)

    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self._engine.vms.stop(ref, timeout=timeout)

    async def remove_vm(self, ref: str, *, force: bool = False) -> str:
        return await self._engine.vms.remove(ref, force=force)

    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        return await self._engine.vms.restart(ref, timeout=timeout)

    async def kill_vm(self, ref: str, sig: int | str) -> VmInfo:
        return await self._engine.vms.kill(ref, sig)

    async def rename_vm(self, ref: str, new_name: str) -> VmInfo:
        return await self._engine.vms.rename(ref, new_name)

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogRecord]:
        return self._engine.vms.logs(ref, follow=follow, tail=tail)

    async def wait_vm(self, ref: str) -> int:
        return await self._engine.vms.wait(ref)

    async def exec(self, ref: str, options: ExecOptions) -> tuple[AgentClient, ExecSession]:
        return await self._engine.vms.exec(ref, options)

    async def attach_main(self, ref: str, rows: int, cols: int) -> tuple[AgentClient, ExecSession]:
        return await self._engine.vms.attach_main(ref, rows, cols)

    async def processes(self, ref: str) -> list[dict[str, str]]:
        _, agent = await self._engine.vms.agent(ref)
        try:
            return await agent.ps()
        finally:
            await agent.close()

    async def stats(self, refs: list[str]) -> list[dict]:
        return await self._engine.vms.stats(refs)

    async def system_info(self) -> dict:
        return await self._engine.system_info()
