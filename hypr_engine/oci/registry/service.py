"""The registry side of the engine: pull, push, login, logout (what HyprClient calls).

Pulls and pushes run as a task that reports `Progress` through a queue, so both
transports (the embedded one, and hyprd's gRPC stream) relay the same events as they
happen; the last event of a pull carries the image recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hypr_engine.errors import InvalidArgument
from hypr_engine.oci.credentials import Credentials, CredentialStore, normalize_server
from hypr_engine.oci.reference import parse_reference
from hypr_engine.oci.registry.config import RegistryConfig
from hypr_engine.oci.registry.progress import Emit, Progress

if TYPE_CHECKING:
    from hypr_engine.images import ImageService

AUTH_FILE = "auth.json"


class RegistryService:
    def __init__(self, images: "ImageService", data_dir: Path) -> None:
        self.images = images
        self.data_dir = Path(data_dir)
        self.credentials = CredentialStore(self.data_dir / AUTH_FILE)

    def config(self) -> RegistryConfig:
        """Read on each operation, so an edit of registries.json applies without a restart."""
        return RegistryConfig.load(self.data_dir)

    async def pull(self, ref: str, platform: str | None = None) -> AsyncIterator[Progress]:
        from hypr_engine.oci.registry.pull import Puller

        async def work(emit: Emit) -> None:
            puller = Puller(self.images.store, self.config(), self.credentials)
            # Held from the first published blob until the image row names it, so a
            # concurrent rmi or prune never sweeps a blob this pull just stored.
            async with self.images.adding():
                loaded = await puller.pull(ref, platform, emit)
                image = await self.images.record_pulled(loaded)
            emit(Progress("done", message=loaded.manifest_digest, image=image))

        async for event in _relay(work):
            yield event

    async def push(self, ref: str) -> AsyncIterator[Progress]:
        from hypr_engine.oci.registry.push import Pusher

        async def work(emit: Emit) -> None:
            target = parse_reference(ref)
            image, _ = await self.images.resolve(str(target))
            manifest_digest = await self.images.manifest_digest(image.id)
            others = [parse_reference(t) for t in image.tags]
            mount_from = [t.path for t in others if t.domain == target.domain and t.path != target.path]
            pusher = Pusher(self.images.store, self.config(), self.credentials)
            await pusher.push(target, manifest_digest, mount_from, emit)

        async for event in _relay(work):
            yield event

    async def login(self, server: str, username: str, password: str) -> str:
        from hypr_engine.oci.registry.transport import Transport

        host = normalize_server(server or "docker.io")
        if not username:
            raise InvalidArgument("login needs a username")
        if not password:
            raise InvalidArgument("login needs a password (use --password-stdin)")
        creds = Credentials(username, password)
        transport = Transport(self.config().endpoints(host, for_push=True)[-1], creds)
        try:
            await transport.request("GET", "/v2/", scope="", what=f"login to {host}", expect=(200,))
        finally:
            await transport.aclose()
        self.credentials.save(host, creds)
        return "Login Succeeded"

    async def logout(self, server: str) -> str:
        host = normalize_server(server or "docker.io")
        if self.credentials.remove(host):
            return f"Removing login credentials for {host}"
        return f"Not logged in to {host}"


async def _relay(work: Callable[[Emit], Awaitable[None]]) -> AsyncIterator[Progress]:
    """Run `work(emit)` as a task and yield what it emits, as it emits it; re-raise its error."""
    queue: asyncio.Queue[Progress | None] = asyncio.Queue()
    task = asyncio.ensure_future(work(queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task   # raises its error, if any
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass
