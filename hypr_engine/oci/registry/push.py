"""`hypr push`: an image of the content store to a registry, as the distribution API wants it.

Each blob (layers and config) is first asked for with HEAD and skipped when the
repository has it; else, when the image also has a tag in another repository of the
same registry, the registry is asked to mount the blob from there (no bytes move);
else it is uploaded in one PUT (`POST .../blobs/uploads/` opens the session). The
manifest goes last, under the tag, byte for byte as stored, so its digest is the one
HYPR recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from hypr_engine.errors import CorruptData, HyprError, InvalidArgument, Unavailable
from hypr_engine.oci.content import ContentStore
from hypr_engine.oci.credentials import CredentialStore
from hypr_engine.oci.descriptor import Descriptor
from hypr_engine.oci.digest import sha256_digest
from hypr_engine.oci.manifest import parse_manifest
from hypr_engine.oci.reference import Reference
from hypr_engine.oci.registry.config import RegistryConfig
from hypr_engine.oci.registry.progress import Emit, Progress, Throttle
from hypr_engine.oci.registry.pull import _first_error, _media_type
from hypr_engine.oci.registry.transport import Transport, status_error

PARALLEL_UPLOADS = 4
UPLOAD_ATTEMPTS = 3
READ_CHUNK = 1 << 20


class Pusher:
    def __init__(self, store: ContentStore, config: RegistryConfig, credentials: CredentialStore,
                 *, parallel: int = PARALLEL_UPLOADS) -> None:
        self.store = store
        self.config = config
        self.credentials = credentials
        self.parallel = parallel

    async def push(self, ref: Reference, manifest_digest: str, mount_from: list[str], emit: Emit) -> str:
        """Push the image whose manifest is `manifest_digest` as `ref` (a tag); returns the manifest digest.

        `mount_from`: other repositories of the same registry that hold this image (paths).
        """
        if ref.tag is None:
            raise InvalidArgument(f"push needs a tag: {ref.familiar()} names none")
        data = self.store.read(manifest_digest)
        if sha256_digest(data) != manifest_digest:
            raise CorruptData(f"the stored manifest {manifest_digest} does not match its digest")
        media_type = _media_type(data, "")
        manifest = parse_manifest(data, what=f"manifest of {ref.familiar()}")
        blobs = list(dict.fromkeys([*manifest.layers, manifest.config]))
        for desc in blobs:
            if not self.store.has(desc.digest):
                raise CorruptData(f"blob {desc.digest} of {ref.familiar()} is missing from the content store")
        endpoint = self.config.endpoints(ref.domain, for_push=True)[-1]
        transport = Transport(endpoint, self.credentials.get(ref.domain))
        sources = [p for p in mount_from if p != ref.path]
        scope = " ".join([f"repository:{ref.path}:pull,push", *(f"repository:{p}:pull" for p in sources[:1])])
        try:
            emit(Progress("resolved", message=f"The push refers to repository [{ref.repository}]",
                          total=len(blobs)))
            for desc in blobs:
                emit(Progress("blob", desc.digest, "waiting", 0, desc.size))
            limit = asyncio.Semaphore(self.parallel)

            async def one(desc: Descriptor) -> None:
                async with limit:
                    await self._push_blob(transport, ref, desc, scope, sources[:1], emit)

            try:
                async with asyncio.TaskGroup() as group:
                    for desc in blobs:
                        group.create_task(one(desc))
            except BaseExceptionGroup as group_error:
                raise _first_error(group_error) from None
            response = await transport.request(
                "PUT", f"/v2/{ref.path}/manifests/{ref.tag}", scope=scope, what=f"push manifest {ref.familiar()}",
                expect=(200, 201), headers={"Content-Type": media_type}, content=lambda: data)
            claimed = response.headers.get("Docker-Content-Digest")
            if claimed and claimed != manifest_digest:
                raise CorruptData(f"{ref.domain} stored the manifest as {claimed}, expected {manifest_digest}")
        finally:
            await transport.aclose()
        emit(Progress("done", message=f"{ref.tag}: digest: {manifest_digest} size: {len(data)}"))
        return manifest_digest

    async def _push_blob(self, transport: Transport, ref: Reference, desc: Descriptor, scope: str,
                         sources: list[str], emit: Emit) -> None:
        what = f"blob {desc.digest}"
        head = await transport.request("HEAD", f"/v2/{ref.path}/blobs/{desc.digest}", scope=scope, what=what,
                                       expect=(200, 404))
        if head.status_code == 200:
            emit(Progress("blob", desc.digest, "exists", desc.size, desc.size))
            return
        last: HyprError | None = None
        for _ in range(UPLOAD_ATTEMPTS):
            params = f"?mount={desc.digest}&from={sources[0]}" if sources else ""
            opened = await transport.request("POST", f"/v2/{ref.path}/blobs/uploads/{params}", scope=scope,
                                             what=f"start upload of {what}", expect=(201, 202))
            if opened.status_code == 201:
                emit(Progress("blob", desc.digest, "mounted", desc.size, desc.size, f"from {sources[0]}"))
                return
            location = opened.headers.get("Location")
            if not location:
                raise Unavailable(f"{ref.domain} opened an upload without a Location")
            url = httpx.URL(transport.url(location) if location.startswith("/") else location)
            url = url.copy_merge_params({"digest": desc.digest})
            throttle = Throttle(emit, desc.digest, desc.size, "uploading")
            path = self.store.path(desc.digest)
            try:
                response = await transport.send(
                    "PUT", str(url), scope=scope, retry=False,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                    content=lambda: _file_chunks(path, throttle))
            except Unavailable as exc:
                last = exc
                continue
            try:
                if response.status_code != 201:
                    await response.aread()
                    last = status_error(ref.domain, response, f"upload {what}")
                    if response.status_code < 500:
                        raise last
                    continue
            finally:
                await response.aclose()
            emit(Progress("blob", desc.digest, "pushed", desc.size, desc.size))
            return
        assert last is not None
        raise last


async def _file_chunks(path: Path, throttle: Throttle) -> AsyncIterator[bytes]:
    sent = 0
    with open(path, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, READ_CHUNK):
            sent += len(chunk)
            yield chunk
            throttle.update(sent)
