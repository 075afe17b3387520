"""`hypr pull`: a reference to an image in the content store, verified blob by blob.

1. Resolve the reference to one image manifest: GET the manifest (OCI or Docker schema 2)
   or index (OCI index or Docker manifest list; then the entry for the platform asked,
   the host's by default); every manifest's bytes must hash to the digest it was asked
   by (or that the registry claims in Docker-Content-Digest).
2. Lock the image's blobs (locks.py), then see which the store already has.
3. Fetch the missing ones into a staging area: the config first (it is small and is
   checked before megabytes of layers move), then the layers, a few at a time, each
   resumed with a Range request after a cut and checked for size and digest as it
   streams. Nothing becomes visible unless every blob checked out: a failure leaves no
   blob, no temp file and no image row behind.
4. Publish the blobs, then record the image the way `hypr load` does.
"""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass

from hypr_engine.errors import CorruptData, HyprError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from hypr_engine.oci.content import BlobWriter, ContentStore, Staging
from hypr_engine.oci.credentials import CredentialStore
from hypr_engine.oci.descriptor import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
)
from hypr_engine.oci.digest import sha256_digest
from hypr_engine.oci.image_config import ImageConfig
from hypr_engine.oci.manifest import MAX_MANIFEST_SIZE, host_platform, is_image_platform, parse_index, parse_manifest
from hypr_engine.oci.reference import Reference, parse_reference
from hypr_engine.oci.registry.config import RegistryConfig
from hypr_engine.oci.registry.locks import BlobLocks
from hypr_engine.oci.registry.progress import Emit, Progress, Throttle
from hypr_engine.oci.registry.transport import Transport

PARALLEL_LAYERS = 4
MAX_CONFIG_SIZE = 16 << 20
WRITE_CHUNK = 1 << 20      # bytes gathered before one write+hash in a worker thread
ACCEPT = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}
_DEFAULT_VARIANT = {"arm64": "v8"}
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd"}
_KNOWN_ARCH = {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64"}


# --- platforms ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(filter(None, (self.os, self.architecture, self.variant)))

    def matches(self, plat: dict | None) -> bool:
        plat = plat or {}
        arch = _ARCH_ALIASES.get(str(plat.get("architecture", "")), plat.get("architecture"))
        if plat.get("os", "linux") != self.os or arch != self.architecture:
            return False
        if self.variant is None:
            return True
        have = plat.get("variant") or _DEFAULT_VARIANT.get(self.architecture)
        return have == self.variant


def parse_platform(text: str | None) -> tuple[Platform, bool]:
    """(platform, whether the user asked for it): `os/arch[/variant]` or `arch`, else the host's."""
    if not text:
        host = host_platform()
        return Platform(host["os"], host["architecture"]), False
    parts = text.strip().lower().split("/")
    if len(parts) == 1:   # as containerd reads one word: an OS (with this host's arch) or an arch (on linux)
        word = _ARCH_ALIASES.get(parts[0], parts[0])
        if word in _KNOWN_OS:
            parts = [word, host_platform()["architecture"]]
        elif word in _KNOWN_ARCH:
            parts = ["linux", word]
        else:
            raise InvalidArgument(f"invalid platform {text!r}: unknown operating system or architecture "
                                  "(use os/arch[/variant], e.g. linux/arm64)")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: use os/arch[/variant], e.g. linux/arm64")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else None), True


def choose_entry(index: list[Descriptor], want: Platform) -> Descriptor | None:
    """The index entry for `want`; among several, one without a variant or with the default one first."""
    matching = [d for d in index if is_image_platform(d) and want.matches(d.platform)]
    if not matching:
        return None
    default = _DEFAULT_VARIANT.get(want.architecture)
    matching.sort(key=lambda d: (d.platform or {}).get("variant") not in (None, default))
    return matching[0]


# --- the pull -------------------------------------------------------------------------------

@dataclass
class Resolved:
    """What a reference names: one image manifest, and how it was reached."""

    transport: Transport
    manifest_digest: str
    manifest_bytes: bytes
    media_type: str


class Puller:
    def __init__(self, store: ContentStore, config: RegistryConfig, credentials: CredentialStore,
                 *, parallel: int = PARALLEL_LAYERS) -> None:
        self.store = store
        self.config = config
        self.credentials = credentials
        self.parallel = parallel

    async def pull(self, text: str, platform: str | None, emit: Emit):  # -> LoadedImage
        """Fetch `text` into the store; returns the LoadedImage to record (nothing stored on failure)."""
        from hypr_engine.oci.archive import LoadedImage

        ref = parse_reference(text)
        want, explicit = parse_platform(platform)
        resolved = await self._resolve_any_endpoint(ref, want, explicit)
        transport = resolved.transport
        try:
            manifest = self._parse_manifest(resolved, ref)
            emit(Progress("resolved", message=f"{ref.tag or ref.digest}: Pulling from {ref.path}",
                          total=len(manifest.layers)))
            layers = list(dict.fromkeys(manifest.layers))
            for layer in layers:
                emit(Progress("blob", layer.digest, "waiting", 0, layer.size))
            locks = BlobLocks(self.store.root / "locks")
            await locks.acquire([manifest.config.digest, *(d.digest for d in layers)],
                                on_wait=lambda d: emit(Progress("blob", d, "locked")))
            try:
                with self.store.stage() as staging:
                    staging.ingest(resolved.manifest_bytes, resolved.manifest_digest, len(resolved.manifest_bytes),
                                   media_type=resolved.media_type)
                    await self._fetch(transport, ref, manifest.config, staging, None)
                    config = ImageConfig.from_json(staging.read(manifest.config.digest, max_size=MAX_CONFIG_SIZE))
                    self._check_config(config, manifest, ref, want, explicit)
                    await self._fetch_layers(transport, ref, layers, staging, emit)
                    staging.commit()
            finally:
                locks.release()
        finally:
            await transport.aclose()
        tags = [str(ref)]
        return LoadedImage(
            config_digest=manifest.config.digest, manifest_digest=resolved.manifest_digest, repo_tags=tags,
            layers=list(manifest.layers), diff_ids=list(config.diff_ids), config=config,
            manifest=resolved.manifest_bytes, manifest_media_type=manifest.media_type,
        )

    # --- resolving -------------------------------------------------------------------------

    async def _resolve_any_endpoint(self, ref: Reference, want: Platform, explicit: bool) -> Resolved:
        """Mirrors first (pulls only), then the registry itself; the first that answers wins."""
        endpoints = self.config.endpoints(ref.domain)
        last: HyprError | None = None
        for endpoint in endpoints:
            # A mirror is another server: it gets its own login (if any), never the registry's.
            login_host = endpoint.base_url.split("://", 1)[1] if endpoint.mirror else ref.domain
            transport = Transport(endpoint, self.credentials.get(login_host))
            try:
                return await self._resolve(transport, ref, want, explicit)
            except (Unavailable, NotFound, Unauthenticated) as exc:
                await transport.aclose()
                if not endpoint.mirror:
                    raise
                last = exc
            except BaseException:
                await transport.aclose()
                raise
        assert last is not None
        raise last

    async def _get_manifest(self, transport: Transport, ref: Reference, reference: str,
                            expected: Descriptor | None) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, its digest checked."""
        what = f"manifest for {ref.familiar_name()}:{reference}" if not reference.startswith("sha256:") \
            else f"manifest {reference} of {ref.familiar_name()}"
        response = await transport.request("GET", f"/v2/{ref.path}/manifests/{reference}", scope=_scope(ref, "pull"),
                                           what=what, headers={"Accept": ACCEPT}, max_size=MAX_MANIFEST_SIZE)
        data = response.content
        digest = sha256_digest(data)
        claimed = response.headers.get("Docker-Content-Digest")
        if reference.startswith("sha256:") and digest != reference:
            raise CorruptData(f"{what}: the registry sent bytes whose digest is {digest}")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise CorruptData(f"{what}: digest mismatch: the registry says {claimed}, the bytes hash to {digest}")
        if expected is not None and len(data) != expected.size:
            raise CorruptData(f"{what}: {len(data)} bytes, the index says {expected.size}")
        media_type = _media_type(data, response.headers.get("Content-Type", ""))
        return data, media_type, digest

    async def _resolve(self, transport: Transport, ref: Reference, want: Platform, explicit: bool) -> Resolved:
        data, media_type, digest = await self._get_manifest(transport, ref, ref.digest or ref.tag or "latest", None)
        if media_type in INDEX_TYPES:
            index = parse_index(data, what=f"index of {ref.familiar()}")
            entry = choose_entry(index.manifests, want)
            if entry is None:
                raise NotFound(f"no matching manifest for {want} in the manifest list entries of {ref.familiar()}"
                               f" (it has: {_platforms(index.manifests) or 'none'})")
            data, media_type, digest = await self._get_manifest(transport, ref, entry.digest, entry)
            if media_type in INDEX_TYPES:
                raise InvalidArgument(f"{ref.familiar()}: nested image indexes are not supported")
        if media_type in SCHEMA1_TYPES:
            raise InvalidArgument(f"{ref.familiar()} uses a Docker schema 1 manifest, which HYPR does not support "
                                  "(deprecated since 2017: push it again with a current tool)")
        if media_type not in MANIFEST_TYPES:
            raise InvalidArgument(f"{ref.familiar()}: unsupported manifest media type {media_type!r} "
                                  "(not a container image)")
        return Resolved(transport, digest, data, media_type)

    def _parse_manifest(self, resolved: Resolved, ref: Reference):
        try:
            return parse_manifest(resolved.manifest_bytes, what=f"manifest of {ref.familiar()}")
        except CorruptData as exc:
            if "media type" in exc.message:
                raise InvalidArgument(exc.message) from None
            raise

    @staticmethod
    def _check_config(config: ImageConfig, manifest, ref: Reference, want: Platform, explicit: bool) -> None:
        if len(config.diff_ids) != len(manifest.layers):
            raise CorruptData(f"{ref.familiar()}: the config lists {len(config.diff_ids)} layers, "
                              f"the manifest {len(manifest.layers)}")
        if explicit and config.architecture and not want.matches(
                {"os": config.os or "linux", "architecture": config.architecture, "variant": config.variant}):
            actual = "/".join(filter(None, (config.os, config.architecture, config.variant)))
            raise NotFound(f"image {ref.familiar()} was found but does not match the specified platform: "
                           f"wanted {want}, actual: {actual}")

    # --- blobs ---------------------------------------------------------------------------------

    async def _fetch_layers(self, transport: Transport, ref: Reference, layers: list[Descriptor],
                            staging: Staging, emit: Emit) -> None:
        limit = asyncio.Semaphore(self.parallel)

        async def one(desc: Descriptor) -> None:
            async with limit:
                await self._fetch(transport, ref, desc, staging, emit)

        try:
            async with asyncio.TaskGroup() as group:
                for desc in layers:
                    group.create_task(one(desc))
        except BaseExceptionGroup as group_error:
            raise _first_error(group_error) from None

    async def _fetch(self, transport: Transport, ref: Reference, desc: Descriptor, staging: Staging,
                     emit: Emit | None) -> None:
        """One blob into the staging area (or nothing, if the store has it)."""
        if staging.has(desc.digest):
            if staging.size(desc.digest) != desc.size:
                raise CorruptData(f"blob {desc.digest} in the store is {staging.size(desc.digest)} bytes, "
                                  f"the manifest says {desc.size}")
            if emit:
                emit(Progress("blob", desc.digest, "exists", desc.size, desc.size))
            return
        writer = staging.writer(expected_digest=desc.digest, expected_size=desc.size, media_type=desc.media_type)
        throttle = Throttle(emit, desc.digest, desc.size, "downloading") if emit else None
        sink = _BufferedSink(writer, desc.digest, self.store)
        what = f"blob {desc.digest} of {ref.familiar_name()}"

        def retrying(offset: int, reason: str) -> None:
            if emit:
                emit(Progress("blob", desc.digest, "retrying", offset, desc.size, reason))

        async def write(chunk: bytes) -> None:
            await sink.write(chunk)
            if throttle:
                throttle.update(sink.received)

        try:
            await transport.download(f"/v2/{ref.path}/blobs/{desc.digest}", scope=_scope(ref, "pull"), what=what,
                                     size=desc.size, sink=write, on_retry=retrying)
            await sink.flush()
            await asyncio.to_thread(_commit, writer, desc.digest)
        except BaseException:
            writer.abort()
            raise
        if emit:
            emit(Progress("blob", desc.digest, "complete", desc.size, desc.size))


class _BufferedSink:
    """Gathers network chunks into 1 MiB writes done in a worker thread (hashing releases the GIL)."""

    def __init__(self, writer: BlobWriter, digest: str, store: ContentStore) -> None:
        self.writer = writer
        self.digest = digest
        self.store = store
        self.received = 0
        self._buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        self._buffer += chunk
        if len(self._buffer) >= WRITE_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        try:
            await asyncio.to_thread(self.writer.write, data)
        except CorruptData as exc:
            raise CorruptData(f"blob {self.digest}: {exc.message}") from None
        except OSError as exc:
            raise _disk_error(exc, self.digest, self.store) from None


def _commit(writer: BlobWriter, digest: str) -> None:
    """Verify size and digest and hand the blob to the staging area (CorruptData if it is not what was asked)."""
    try:
        writer.commit()
    except OSError as exc:
        raise _disk_error(exc, digest, None) from None


def _disk_error(exc: OSError, digest: str, store: ContentStore | None) -> HyprError:
    where = f" in {store.root}" if store is not None else ""
    if exc.errno == errno.ENOSPC:
        return Unavailable(f"no space left on device while storing blob {digest}{where}")
    return Unavailable(f"cannot store blob {digest}{where}: {exc.strerror or exc}")


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The HyprError a failed task group stands for (the first one, depth-first)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, HyprError):
            return exc
    return group.exceptions[0]


def _media_type(data: bytes, content_type: str) -> str:
    """A manifest's media type: its own `mediaType` field, else the Content-Type, else its shape."""
    import json

    from hypr_engine.oci.manifest import sniff_media_type

    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, UnicodeDecodeError, AttributeError):
        declared = None
    if isinstance(declared, str) and declared:
        return declared
    header = content_type.split(";", 1)[0].strip()
    if header in (*MANIFEST_TYPES, *INDEX_TYPES, *SCHEMA1_TYPES):
        return header
    return sniff_media_type(data) or header


def _platforms(entries: list[Descriptor]) -> str:
    names = []
    for d in entries:
        if is_image_platform(d) and d.platform:
            names.append("/".join(filter(None, (d.platform.get("os"), d.platform.get("architecture"),
                                                d.platform.get("variant")))))
    return ", ".join(names)


def _scope(ref: Reference, actions: str) -> str:
    return f"repository:{ref.path}:{actions}"
