"""HyprClient: the one async interface both front ends use.

It has two transports (DESIGN.md, "Layers"), chosen by `connect()`:

- gRPC to hyprd (`_grpc.py`) when `$HYPR_RUNTIME_DIR/hyprd.sock` exists: the socket
  must be one this user may trust and must answer `System.Hello` with a compatible API
  version, or the client refuses and says why (it never silently embeds an engine
  beside a daemon that is merely hung: the daemon holds the data directory's lock);
- the embedded engine (`_embedded.py`) when there is no socket: an Engine in this
  process, holding the data directory's lock shared.

Both return the same model objects (models.py, logfile.LogRecord, logview.Page,
events.Event/Gap) and raise the same HyprError classes, so front ends call only these
methods and print the same thing either way (tests/daemon/test_identical.py).

`exec` and `attach_main` return a session with ExecSession's interface (output(),
write(), close_stdin(), resize(), signal(), exit_code, pid) plus `close()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Protocol

from hypr_engine.paths import Layout

if TYPE_CHECKING:
    from hypr_engine.events import Event, Gap
    from hypr_engine.logfile import LogRecord
    from hypr_engine.logview import Page, Positioned
    from hypr_engine.models import ExecOptions, ImageInfo, RunProgress, VmDetails, VmInfo, VmSpec, VolumeInfo
    from hypr_engine.models import ImageDiskUsage, ImageHistoryEntry, ImagePruneReport, NetworkInfo
    from hypr_engine.oci.registry.progress import Progress
    from hypr_engine.net.ports import PortBinding


class ExecHandle(Protocol):
    pid: int | None
    exit_code: int | None

    def output(self) -> AsyncIterator[tuple[str, bytes]]: ...
    async def wait(self) -> int: ...
    async def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def resize(self, rows: int, cols: int) -> None: ...
    def signal(self, sig: int) -> None: ...
    async def close(self) -> None: ...


class Transport(Protocol):
    """What each transport implements; HyprClient's methods mirror it one to one."""

    mode: str   # "embedded" | "daemon"

    async def close(self) -> None: ...
    async def load_image(self, path: Path) -> "list[ImageInfo]": ...
    async def import_image(self, tarball: Path, ref: str | None) -> "ImageInfo": ...
    async def list_images(self) -> "list[ImageInfo]": ...
    async def get_image(self, ref: str) -> "ImageInfo": ...
    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]: ...
    async def tag_image(self, source: str, target: str) -> str: ...
    async def image_history(self, ref: str) -> "list[ImageHistoryEntry]": ...
    async def save_images(self, refs: list[str], output: Path) -> list[str]: ...
    async def prune_images(self, *, all: bool = False) -> "ImagePruneReport": ...
    async def image_disk_usage(self) -> "ImageDiskUsage": ...
    def pull_image(self, ref: str, *, platform: str | None = None) -> "AsyncIterator[Progress]": ...
    def push_image(self, ref: str) -> "AsyncIterator[Progress]": ...
    async def login(self, server: str, username: str, password: str) -> str: ...
    async def logout(self, server: str) -> str: ...
    async def create_vm(self, spec: "VmSpec") -> "VmInfo": ...
    def run_vm(self, spec: "VmSpec", *, start: bool = True) -> "AsyncIterator[RunProgress]": ...
    async def start_vm(self, ref: str) -> "VmInfo": ...
    async def list_vms(self, *, all: bool = False) -> "list[VmInfo]": ...
    async def get_vm(self, ref: str) -> "VmInfo": ...
    async def inspect_vm(self, ref: str) -> "VmDetails": ...
    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> "VmInfo": ...
    async def remove_vm(self, ref: str, *, force: bool = False) -> str: ...
    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> "VmInfo": ...
    async def kill_vm(self, ref: str, sig: int | str) -> "VmInfo": ...
    async def signal_process(self, ref: str, pid: int, sig: int | str) -> "VmInfo": ...
    async def rename_vm(self, ref: str, new_name: str) -> "VmInfo": ...
    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None, since_ns: int | None = None,
             until_ns: int | None = None) -> "AsyncIterator[LogRecord]": ...
    async def read_logs(self, ref: str, *, offset: int | None = None, index: int | None = None,
                        limit: int = 1000, backwards: bool = False) -> "Page": ...
    def search_logs(self, ref: str, pattern: str, *, regex: bool = False, ignore_case: bool = False,
                    from_offset: int = 0, max_matches: int = 1000, kinds: Iterable[str] = ()
                    ) -> "AsyncIterator[tuple[list[Positioned], int, bool]]": ...
    async def wait_vm(self, ref: str) -> int: ...
    async def exec(self, ref: str, options: "ExecOptions") -> ExecHandle: ...
    async def attach_main(self, ref: str, rows: int, cols: int) -> ExecHandle: ...
    async def copy_to_vm(self, ref: str, src: Path, dest: str, *, archive: bool = False) -> None: ...
    async def copy_from_vm(self, ref: str, src: str, dest: Path) -> None: ...
    async def processes(self, ref: str) -> list[dict[str, str]]: ...
    async def stats(self, refs: list[str], *, all: bool = False) -> list[dict]: ...
    def events(self, *, since_seq: int | None = None, since_time: float | None = None,
               until_time: float | None = None, follow: bool = True,
               filters: Iterable[tuple[str, str]] = ()) -> "AsyncIterator[Event | Gap]": ...
    async def system_info(self) -> dict: ...
    async def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                             internal: bool = False, labels: dict[str, str] | None = None) -> "NetworkInfo": ...
    async def list_networks(self) -> "list[NetworkInfo]": ...
    async def get_network(self, ref: str) -> "NetworkInfo": ...
    async def remove_network(self, ref: str, *, force: bool = False) -> str: ...
    async def prune_networks(self) -> list[str]: ...
    async def connect_network(self, network: str, vm: str, *, aliases: list[str] = (),
                              ip: str | None = None) -> "tuple[NetworkInfo, bool]": ...
    async def disconnect_network(self, network: str, vm: str) -> "tuple[NetworkInfo, bool]": ...
    async def vm_ports(self, ref: str) -> "list[PortBinding]": ...


def daemon_socket(layout: Layout) -> Path:
    from hypr_engine.api import SOCKET_NAME

    return layout.runtime / SOCKET_NAME


class HyprClient:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    @classmethod
    async def connect(cls, layout: Layout | None = None) -> "HyprClient":
        """hyprd when its socket exists (and is trustworthy and answers), else an embedded engine."""
        layout = layout or Layout.default()
        socket_path = daemon_socket(layout)
        if socket_path.exists() or socket_path.is_symlink():
            from hypr_engine._grpc import GrpcTransport

            return cls(await GrpcTransport.connect(socket_path))
        from hypr_engine._embedded import EmbeddedTransport
        from hypr_engine.engine import Engine

        return cls(EmbeddedTransport(await Engine.open(layout)))

    @property
    def mode(self) -> str:
        """"daemon" or "embedded"."""
        return self._transport.mode

    @property
    def _engine(self) -> Any:
        """The embedded engine (tests reach into it); absent behind hyprd."""
        engine = getattr(self._transport, "engine", None)
        if engine is None:
            raise AttributeError("HyprClient talks to hyprd: there is no engine in this process")
        return engine

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> "HyprClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- images -------------------------------------------------------------------------

    async def load_image(self, path: Path) -> "list[ImageInfo]":
        return await self._transport.load_image(path)

    async def import_image(self, tarball: Path, ref: str | None) -> "ImageInfo":
        return await self._transport.import_image(tarball, ref)

    async def list_images(self) -> "list[ImageInfo]":
        return await self._transport.list_images()

    async def get_image(self, ref: str) -> "ImageInfo":
        return await self._transport.get_image(ref)

    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        return await self._transport.remove_image(ref, force=force)

    async def tag_image(self, source: str, target: str) -> str:
        """Give the image `source` names the reference `target` too; returns it in familiar form."""
        return await self._transport.tag_image(source, target)

    async def image_history(self, ref: str) -> "list[ImageHistoryEntry]":
        """The image config's history, newest first, with layer sizes (`docker history`)."""
        return await self._transport.image_history(ref)

    async def save_images(self, refs: list[str], output: Path) -> list[str]:
        """Write images as one docker-archive at `output` (a path on the engine's host); returns their IDs."""
        return await self._transport.save_images(refs, output)

    async def prune_images(self, *, all: bool = False) -> "ImagePruneReport":
        """Remove dangling images (with `all`: every image no VM uses) and reclaim their space."""
        return await self._transport.prune_images(all=all)

    async def image_disk_usage(self) -> "ImageDiskUsage":
        """Bytes of blobs and cached root filesystems, and what pruning all unused images would free."""
        return await self._transport.image_disk_usage()
    # --- registries ----------------------------------------------------------------------

    def pull_image(self, ref: str, *, platform: str | None = None) -> "AsyncIterator[Progress]":
        """Pull from a registry, streaming Progress; the last event ("done") carries the image."""
        return self._transport.pull_image(ref, platform=platform)

    def push_image(self, ref: str) -> "AsyncIterator[Progress]":
        """Push a tagged image to its registry, streaming Progress ("done" says the digest)."""
        return self._transport.push_image(ref)

    async def login(self, server: str, username: str, password: str) -> str:
        """Check credentials against a registry and store them (0600); returns "Login Succeeded"."""
        return await self._transport.login(server, username, password)

    async def logout(self, server: str) -> str:
        return await self._transport.logout(server)

    # --- VMs ------------------------------------------------------------------------------

    async def create_vm(self, spec: "VmSpec") -> "VmInfo":
        return await self._transport.create_vm(spec)

    def run_vm(self, spec: "VmSpec", *, start: bool = True) -> "AsyncIterator[RunProgress]":
        """Create (and start) with progress: image_resolved, created, rootfs_ready, started."""
        return self._transport.run_vm(spec, start=start)

    async def start_vm(self, ref: str) -> "VmInfo":
        return await self._transport.start_vm(ref)

    async def list_vms(self, *, all: bool = False) -> "list[VmInfo]":
        return await self._transport.list_vms(all=all)

    async def get_vm(self, ref: str) -> "VmInfo":
        return await self._transport.get_vm(ref)

    async def inspect_vm(self, ref: str) -> "VmDetails":
        return await self._transport.inspect_vm(ref)

    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> "VmInfo":
        return await self._transport.stop_vm(ref, timeout=timeout)

    async def remove_vm(self, ref: str, *, force: bool = False) -> str:
        return await self._transport.remove_vm(ref, force=force)

    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> "VmInfo":
        return await self._transport.restart_vm(ref, timeout=timeout)

    async def kill_vm(self, ref: str, sig: int | str) -> "VmInfo":
        return await self._transport.kill_vm(ref, sig)

    async def signal_process(self, ref: str, pid: int, sig: int | str = "SIGKILL") -> "VmInfo":
        """Send a signal to one process of a running VM, by its pid in the guest."""
        return await self._transport.signal_process(ref, pid, sig)

    async def rename_vm(self, ref: str, new_name: str) -> "VmInfo":
        return await self._transport.rename_vm(ref, new_name)

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None, since_ns: int | None = None,
             until_ns: int | None = None) -> "AsyncIterator[LogRecord]":
        return self._transport.logs(ref, follow=follow, tail=tail, since_ns=since_ns, until_ns=until_ns)

    async def read_logs(self, ref: str, *, offset: int | None = None, index: int | None = None,
                        limit: int = 1000, backwards: bool = False) -> "Page":
        """One page of the log by byte offset or record index (logview.py)."""
        return await self._transport.read_logs(ref, offset=offset, index=index, limit=limit, backwards=backwards)

    def search_logs(self, ref: str, pattern: str, *, regex: bool = False, ignore_case: bool = False,
                    from_offset: int = 0, max_matches: int = 1000, kinds: Iterable[str] = ()
                    ) -> "AsyncIterator[tuple[list[Positioned], int, bool]]":
        """Batches of (matches, scanned_to, done)."""
        return self._transport.search_logs(ref, pattern, regex=regex, ignore_case=ignore_case,
                                           from_offset=from_offset, max_matches=max_matches, kinds=kinds)

    async def wait_vm(self, ref: str) -> int:
        return await self._transport.wait_vm(ref)

    async def exec(self, ref: str, options: "ExecOptions") -> ExecHandle:
        return await self._transport.exec(ref, options)

    async def attach_main(self, ref: str, rows: int, cols: int) -> ExecHandle:
        return await self._transport.attach_main(ref, rows, cols)

    async def copy_to_vm(self, ref: str, src: Path, dest: str, *, archive: bool = False) -> None:
        """Copy a host file or tree into a VM (`hypr cp SRC VM:DEST`)."""
        await self._transport.copy_to_vm(ref, src, dest, archive=archive)

    async def copy_from_vm(self, ref: str, src: str, dest: Path) -> None:
        """Copy a file or tree out of a VM (`hypr cp VM:SRC DEST`)."""
        await self._transport.copy_from_vm(ref, src, dest)

    async def processes(self, ref: str) -> list[dict[str, str]]:
        return await self._transport.processes(ref)

    async def stats(self, refs: list[str], *, all: bool = False) -> list[dict]:
        return await self._transport.stats(refs, all=all)

    async def vm_ports(self, ref: str) -> "list[PortBinding]":
        """A VM's published ports as they are in place now (`hypr port`)."""
        return await self._transport.vm_ports(ref)

    # --- events and the system --------------------------------------------------------------

    def events(self, *, since_seq: int | None = None, since_time: float | None = None,
               until_time: float | None = None, follow: bool = True,
               filters: Iterable[tuple[str, str]] = ()) -> "AsyncIterator[Event | Gap]":
        return self._transport.events(since_seq=since_seq, since_time=since_time, until_time=until_time,
                                      follow=follow, filters=filters)

    async def system_info(self) -> dict:
        return await self._transport.system_info()

    # --- volumes and space (system df / prune) ----------------------------------------------

    async def create_volume(self, name: str | None, *, labels: dict[str, str] | None = None,
                            options: dict[str, str] | None = None) -> "VolumeInfo":
        return await self._transport.create_volume(name, labels=labels, options=options)

    async def list_volumes(self, filters: Iterable[tuple[str, str]] = ()) -> "list[VolumeInfo]":
        return await self._transport.list_volumes(filters)

    async def get_volume(self, name: str) -> "VolumeInfo":
        return await self._transport.get_volume(name)

    async def remove_volume(self, name: str, *, force: bool = False) -> str:
        return await self._transport.remove_volume(name, force=force)

    async def prune_volumes(self, *, all: bool = False) -> tuple[list[str], int]:
        """Unused anonymous volumes (every unused one with all): names and host bytes reclaimed."""
        return await self._transport.prune_volumes(all=all)

    async def system_df(self) -> dict:
        return await self._transport.system_df()

    async def system_prune(self, *, all: bool = False, volumes: bool = False) -> dict:
        return await self._transport.system_prune(all=all, volumes=volumes)
    # --- networks -----------------------------------------------------------------------------

    async def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                             internal: bool = False, labels: dict[str, str] | None = None) -> "NetworkInfo":
        """A user network (root only): a bridge, its subnet (chosen unless given), DNS and isolation."""
        return await self._transport.create_network(name, subnet=subnet, gateway=gateway, internal=internal,
                                                    labels=labels)

    async def list_networks(self) -> "list[NetworkInfo]":
        return await self._transport.list_networks()

    async def get_network(self, ref: str) -> "NetworkInfo":
        return await self._transport.get_network(ref)

    async def remove_network(self, ref: str, *, force: bool = False) -> str:
        return await self._transport.remove_network(ref, force=force)

    async def prune_networks(self) -> list[str]:
        return await self._transport.prune_networks()

    async def connect_network(self, network: str, vm: str, *, aliases: list[str] = (),
                              ip: str | None = None) -> "tuple[NetworkInfo, bool]":
        """Attach a VM; the bool says the VM runs and gets the interface at its next start."""
        return await self._transport.connect_network(network, vm, aliases=aliases, ip=ip)

    async def disconnect_network(self, network: str, vm: str) -> "tuple[NetworkInfo, bool]":
        return await self._transport.disconnect_network(network, vm)
