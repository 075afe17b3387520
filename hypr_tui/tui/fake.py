"""A fake HyprClient with fixed, deterministic data: the scene of the screenshots and
snapshot tests. It has HyprClient's methods and return types and nothing else, so
a screen that works against it works against the real client too.

Nothing here moves with the wall clock: times derive from FIXED_NOW, and the
dashboard built for a scene gets `clock=lambda: FIXED_NOW`.
"""

from __future__ import annotations

import asyncio
import math
import signal as signal_mod
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from hypr_engine.errors import Conflict, NotFound
from hypr_engine.logfile import LogRecord
from hypr_engine.models import ExecOptions, ImageInfo, VmInfo, VmSpec, VolumeInfo

FIXED_NOW = 1_764_331_200.0  # 2025-11-28 12:00:00 UTC
HOSTNAME = "devbox"


def _vm(n: int, name: str, image: str, state: str, *, age: float, up: float | None = None,
        exit_code: int | None = None, health: str | None = None, cpus: int = 1, memory: int = 256,
        command: list[str] | None = None) -> VmInfo:
    vm_id = (f"{n}f3a9c1e7b2d4" * 6)[:64]
    started = FIXED_NOW - up if up is not None else None
    finished = FIXED_NOW - 300 if state == "exited" else None
    spec = VmSpec(image=image, name=name, command=command, cpus=cpus, memory_mb=memory)
    return VmInfo(
        id=vm_id, name=name, image=image, image_id=f"sha256:{n:064x}", command=command or ["sh"],
        state=state, exit_code=exit_code, error=None, created_at=FIXED_NOW - age, started_at=started,
        finished_at=finished, auto_remove=False, spec=spec,
        health={"Status": health, "FailingStreak": 0, "Log": []} if health else None,
    )


def scene_vms() -> list[VmInfo]:
    return [
        _vm(1, "web", "nginx:1.27", "running", age=90_000, up=11_520, health="healthy", cpus=2, memory=512,
            command=["nginx", "-g", "daemon off;"]),
        _vm(2, "api", "python:3.12-slim", "running", age=3_000, up=2_820, health="starting", memory=1024,
            command=["python", "-m", "http.server"]),
        _vm(3, "db", "postgres:16", "running", age=200_000, up=187_200, cpus=2, memory=2048,
            command=["postgres"]),
        _vm(4, "worker", "hypr/busybox", "exited", age=7_200, exit_code=0, command=["sh", "-c", "run-jobs"]),
        _vm(5, "migrate", "alpine:3.20", "exited", age=4_000, exit_code=1, command=["/migrate"]),
        _vm(6, "batch", "hypr/busybox", "created", age=60, command=["sh"]),
    ]


def scene_images() -> list[ImageInfo]:
    def img(n: int, tags: list[str], size: int, days: int) -> ImageInfo:
        created = f"2025-{11 - days // 30:02d}-{28 - days % 28:02d}T10:00:00Z"
        return ImageInfo(id=f"sha256:{n:02x}" + "c0ffee" * 10 + "ab", tags=tags, size=size, created=created,
                         added_at=FIXED_NOW - days * 86400, config={}, layers=[])
    return [
        img(1, ["nginx:1.27"], 71_300_000, 12),
        img(2, ["python:3.12-slim"], 124_900_000, 20),
        img(3, ["postgres:16"], 432_100_000, 33),
        img(4, ["hypr/busybox:latest"], 4_300_000, 2),
        img(5, ["alpine:3.20"], 7_800_000, 45),
    ]


def scene_volumes() -> list[VolumeInfo]:
    def vol(name: str, size: int, used: int, users: list[str], anonymous: bool = False) -> VolumeInfo:
        return VolumeInfo(name=name, driver="local", mountpoint=f"/var/lib/hypr/volumes/{name}/disk.ext4",
                          labels={}, options={}, size_bytes=size, allocated_bytes=used, anonymous=anonymous,
                          created_at=FIXED_NOW - 86400, used_by=users)
    return [
        vol("pgdata", 8 << 30, 412_000_000, ["db"]),
        vol("site-cache", 1 << 30, 23_500_000, ["web"]),
        vol("9f3b2c1d0e4a" + "0" * 52, 8 << 30, 4_300_000, [], anonymous=True),
    ]


def scene_processes(vm: VmInfo, step: int = 0) -> list[dict[str, str]]:
    """The processes of a VM; CPU ticks grow with `step` (one per poll), at fixed rates."""
    rows = [
        ("1", "0", "0", "S", "1204", "12", "0", "1", "kestrel", "/init"),
        ("42", "1", "0", "S", "6480", "310", "80", "1", "nginx", "nginx: master process nginx -g daemon off;"),
        ("43", "42", "101", "S", "3212", "1210", "81", "1", "nginx", "nginx: worker process"),
        ("44", "42", "101", "R", "3300", "1960", "81", "1", "nginx", "nginx: worker process"),
        ("51", "1", "0", "S", "2100", "4", "120", "1", "crond", "crond -f"),
        ("77", "1", "0", "S", "1520", "2", "900", "1", "sh", "sh"),
        ("78", "77", "0", "R", "1400", "1", "905", "1", "top", "top -b"),
    ]
    keys = ("pid", "ppid", "uid", "state", "rss_kb", "cpu_ticks", "start_ticks", "threads", "comm", "cmdline")
    rates = {"1": 0, "42": 1, "43": 14, "44": 37, "51": 0, "77": 0, "78": 3}  # ticks per 2 s poll
    out = []
    for r in rows:
        p = dict(zip(keys, r))
        p["cpu_ticks"] = str(int(p["cpu_ticks"]) + rates[p["pid"]] * step)
        out.append(p)
    return out


def scene_stats(vm: VmInfo, step: int = 0) -> dict:
    """A deterministic sample of a running VM, varying with `step` (one per poll)."""
    if vm.state != "running":
        return {"id": vm.id, "name": vm.name, "error": vm.state}
    seed = sum(map(ord, vm.name))
    cpu = 20 + 15 * math.sin((step + seed) / 5) + 8 * math.sin((step * 3 + seed) / 7)
    mem_limit = vm.spec.memory_mb << 20
    mem_used = int(mem_limit * (0.30 + 0.08 * math.sin((step + seed) / 11) + 0.002 * step))
    return {
        "id": vm.id, "name": vm.name, "cpu_percent": round(max(0.0, cpu), 2),
        "mem_used": mem_used, "mem_limit": mem_limit,
        # Counters, as the guest reports them; their rates wave smoothly.
        "net_rx": int(1_000_000 + step * (40_000 + seed * 10) + 300_000 * math.sin(step / 7)),
        "net_tx": int(500_000 + step * (12_000 + seed * 5) + 90_000 * math.sin(step / 5)),
        "block_read": int(8_000_000 + step * 5_000 + 40_000 * math.sin(step / 9)),
        "block_write": int(2_000_000 + step * 20_000 + 90_000 * math.sin(step / 6)),
        "pids": 7, "vmm_rss": 119 << 20,
    }


def scene_history(vm: VmInfo, samples: int = 90, interval: float = 2.0) -> list[tuple[float, dict]]:
    """(time, sample) pairs ending at FIXED_NOW: the metrics screen's ring buffer, prefilled."""
    return [(FIXED_NOW - (samples - 1 - i) * interval, scene_stats(vm, i)) for i in range(samples)]


def scene_log(vm: VmInfo, lines: int = 240) -> list[LogRecord]:
    out = []
    base = int((FIXED_NOW - 600) * 1e9)
    paths = ["/", "/index.html", "/api/health", "/static/app.js", "/favicon.ico", "/api/items?page=2"]
    for i in range(lines):
        t = base + i * 2_500_000_000
        if i % 17 == 5:
            out.append(LogRecord(t, "e", f"2025/11/28 11:{50 + i // 24:02d}:{i % 60:02d} [warn] 7#7: *{i} upstream "
                                         f"response is buffered to a temporary file".encode()))
        elif i % 41 == 20:
            out.append(LogRecord(t, "e", f"2025/11/28 11:{50 + i // 24:02d}:{i % 60:02d} [error] 7#7: *{i} open() "
                                         f"\"/usr/share/nginx/html/missing\" failed (2: No such file)".encode()))
        else:
            path = paths[i % len(paths)]
            status = 404 if path == "/favicon.ico" else 200
            out.append(LogRecord(t, "o", f"10.0.2.{2 + i % 7} - - [28/Nov/2025:11:{50 + i // 24:02d}:{i % 60:02d}"
                                         f" +0000] \"GET {path} HTTP/1.1\" {status} {512 + (i * 37) % 4096}"
                                         f" \"-\" \"curl/8.5.0\"".encode()))
    return out


def scene_events() -> list:
    from hypr_engine.events import Event

    vms = {vm.name: vm for vm in scene_vms()}
    rows = [
        (3300, "image", "load", "sha256:01c0ffee", "nginx:1.27", {}),
        (3000, "vm", "create", vms["api"].id, "api", {"image": "python:3.12-slim"}),
        (2990, "vm", "start", vms["api"].id, "api", {"image": "python:3.12-slim"}),
        (2820, "vm", "running", vms["api"].id, "api", {"image": "python:3.12-slim"}),
        (900, "vm", "exec_start", vms["web"].id, "web", {"execID": "7", "command": "sh"}),
        (420, "vm", "start", vms["migrate"].id, "migrate", {"image": "alpine:3.20"}),
        (300, "vm", "die", vms["migrate"].id, "migrate", {"exitCode": "1"}),
        (300, "vm", "die", vms["worker"].id, "worker", {"exitCode": "0"}),
        (60, "vm", "create", vms["batch"].id, "batch", {"image": "hypr/busybox"}),
        (20, "image", "tag", "sha256:04c0ffee", "hypr/busybox:latest", {}),
    ]
    return [Event(i + 1, FIXED_NOW - ago, kind, action, ident, name, attrs)
            for i, (ago, kind, action, ident, name, attrs) in enumerate(rows)]


# A shell session, as the guest's terminal would draw it: colours, a prompt, `ls`.
EXEC_BANNER = (
    b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/\x1b[0m# ls -l /etc/nginx\r\n"
    b"total 24\r\n"
    b"drwxr-xr-x 2 root root 4096 Nov 12 10:00 \x1b[1;34mconf.d\x1b[0m\r\n"
    b"-rw-r--r-- 1 root root 1007 Nov 12 10:00 fastcgi_params\r\n"
    b"-rw-r--r-- 1 root root 5349 Nov 12 10:00 mime.types\r\n"
    b"lrwxrwxrwx 1 root root   22 Nov 12 10:00 \x1b[1;36mmodules\x1b[0m -> /usr/lib/nginx/modules\r\n"
    b"-rw-r--r-- 1 root root  648 Nov 12 10:00 nginx.conf\r\n"
    b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/\x1b[0m# nginx -t\r\n"
    b"nginx: the configuration file /etc/nginx/nginx.conf syntax is \x1b[32mok\x1b[0m\r\n"
    b"nginx: configuration file /etc/nginx/nginx.conf test is \x1b[1;32msuccessful\x1b[0m\r\n"
    b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/\x1b[0m# "
)


class FakeSession:
    """Echoes what is typed, as a terminal in cooked mode would; `exit` + Enter ends it."""

    def __init__(self, banner: bytes) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queue.put_nowait(banner)
        self._line = b""
        self.exit_code: int | None = None
        self.written: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []
        self.signals: list[int] = []
        self.closed = False

    async def output(self):
        while True:
            data = await self._queue.get()
            if data is None:
                self.exit_code = 0
                return
            yield "stdout", data

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        for byte in data:
            ch = bytes([byte])
            if ch == b"\r":
                self._queue.put_nowait(b"\r\n")
                if self._line.strip() == b"exit":
                    self._queue.put_nowait(None)
                    return
                self._queue.put_nowait(b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/\x1b[0m# ")
                self._line = b""
            elif ch == b"\x7f":
                if self._line:
                    self._line = self._line[:-1]
                    self._queue.put_nowait(b"\b \b")
            elif byte >= 32:
                self._line += ch
                self._queue.put_nowait(ch)

    def close_stdin(self) -> None:
        self._queue.put_nowait(None)

    def resize(self, rows: int, cols: int) -> None:
        self.sizes.append((rows, cols))

    def signal(self, sig: int = signal_mod.SIGTERM) -> None:
        self.signals.append(int(sig))

    async def close(self) -> None:
        self.closed = True


class FakeClient:
    """HyprClient's interface over a fixed scene. Mutations change the scene in memory."""

    def __init__(self, *, vms: list[VmInfo] | None = None, images: list[ImageInfo] | None = None,
                 mode: str = "embedded", log_lines: int = 240) -> None:
        self.vms = scene_vms() if vms is None else vms
        self.images = scene_images() if images is None else images
        self.volumes = scene_volumes() if vms is None else []
        self.mode = mode
        self.log_lines = log_lines
        self.calls: list[tuple] = []
        self.sessions: list[FakeSession] = []
        self._steps: dict[str, int] = {}

    def _find(self, ref: str) -> VmInfo:
        for vm in self.vms:
            if ref in (vm.id, vm.name) or (len(ref) >= 3 and vm.id.startswith(ref)):
                return vm
        raise NotFound(f"no such VM: {ref}")

    def _replace(self, vm: VmInfo, **changes) -> VmInfo:
        new = replace(vm, **changes)
        self.vms[self.vms.index(vm)] = new
        return new

    async def close(self) -> None:
        pass

    async def list_vms(self, *, all: bool = False) -> list[VmInfo]:
        return [vm for vm in self.vms if all or vm.state == "running"]

    async def get_vm(self, ref: str) -> VmInfo:
        return self._find(ref)

    async def start_vm(self, ref: str) -> VmInfo:
        self.calls.append(("start", ref))
        vm = self._find(ref)
        return self._replace(vm, state="running", started_at=FIXED_NOW, exit_code=None)

    async def stop_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        self.calls.append(("stop", ref))
        vm = self._find(ref)
        return self._replace(vm, state="exited", exit_code=0, finished_at=FIXED_NOW)

    async def restart_vm(self, ref: str, *, timeout: int | None = None) -> VmInfo:
        self.calls.append(("restart", ref))
        return self._replace(self._find(ref), state="running", started_at=FIXED_NOW)

    async def kill_vm(self, ref: str, sig: int | str) -> VmInfo:
        self.calls.append(("kill", ref, sig))
        vm = self._find(ref)
        if vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        return self._replace(vm, state="exited", exit_code=137, finished_at=FIXED_NOW)

    async def signal_process(self, ref: str, pid: int, sig: int | str) -> VmInfo:
        self.calls.append(("signal_process", ref, pid, sig))
        vm = self._find(ref)
        if vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        return vm

    async def remove_vm(self, ref: str, *, force: bool = False) -> str:
        self.calls.append(("rm", ref, force))
        vm = self._find(ref)
        if vm.state == "running" and not force:
            raise Conflict(f"VM {vm.name} is running: stop it first or force the removal")
        self.vms.remove(vm)
        return vm.id

    async def rename_vm(self, ref: str, new_name: str) -> VmInfo:
        self.calls.append(("rename", ref, new_name))
        return self._replace(self._find(ref), name=new_name)

    async def wait_vm(self, ref: str) -> int:
        vm = self._find(ref)
        while vm.state == "running":
            await asyncio.sleep(0.05)
            vm = self._find(ref)
        return vm.exit_code or 0

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None):
        async def gen():
            vm = self._find(ref)
            records = scene_log(vm, self.log_lines)
            if tail is not None:
                records = records[-tail:] if tail else []
            for rec in records:
                yield rec
            if follow and vm.state == "running":
                await asyncio.Event().wait()  # a quiet, running VM: nothing more until cancelled
        return gen()

    async def exec(self, ref: str, options: ExecOptions):
        self.calls.append(("exec", ref, tuple(options.argv)))
        vm = self._find(ref)
        if vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        session = FakeSession(EXEC_BANNER)
        self.sessions.append(session)
        return session

    async def processes(self, ref: str) -> list[dict[str, str]]:
        vm = self._find(ref)
        if vm.state != "running":
            raise Conflict(f"VM {vm.name} is not running")
        step = self._steps.get("ps:" + vm.id, 0)
        self._steps["ps:" + vm.id] = step + 1
        return scene_processes(vm, step)

    async def stats(self, refs: list[str], *, all: bool = False) -> list[dict]:
        vms = [self._find(r) for r in refs] if refs else [v for v in self.vms if all or v.state == "running"]
        out = []
        for vm in vms:
            step = self._steps.get(vm.id, 90)
            self._steps[vm.id] = step + 1
            out.append(scene_stats(vm, step))
        return out

    async def copy_to_vm(self, ref: str, src, dest: str, *, archive: bool = False) -> None:
        self.calls.append(("cp-to", ref, str(src), dest, archive))
        self._find(ref)

    async def copy_from_vm(self, ref: str, src: str, dest) -> None:
        self.calls.append(("cp-from", ref, src, str(dest)))
        self._find(ref)

    def events(self, *, since_seq=None, since_time=None, until_time=None, follow: bool = True, filters=()):
        async def gen():
            for event in scene_events():
                if since_time is None or event.time >= since_time:
                    yield event
            if follow:
                await asyncio.Event().wait()  # nothing more happens in a fixed scene
        return gen()

    async def list_images(self) -> list[ImageInfo]:
        return list(self.images)

    async def list_volumes(self, filters=()) -> list[VolumeInfo]:
        return list(self.volumes)

    async def remove_image(self, ref: str, *, force: bool = False) -> list[str]:
        self.calls.append(("rmi", ref, force))
        for img in self.images:
            if ref in img.tags or img.id == ref or img.short_id == ref:
                self.images.remove(img)
                return [f"Untagged: {t}" for t in img.tags] + [f"Deleted: {img.id}"]
        raise NotFound(f"no such image: {ref}")

    async def load_image(self, path):
        raise NotFound(f"{path}: no such file")

    async def import_image(self, tarball, ref):
        raise NotFound(f"{tarball}: no such file")

    # --- image actions (hypr_tui/tui/image_actions.py) ---

    def _image(self, ref: str) -> ImageInfo:
        for img in self.images:
            if ref in img.tags or img.id == ref or img.short_id == ref:
                return img
        raise NotFound(f"unable to find image '{ref}' locally")

    async def get_image(self, ref: str) -> ImageInfo:
        return self._image(ref)

    async def image_history(self, ref: str) -> list:
        from hypr_engine.models import ImageHistoryEntry

        img = self._image(ref)
        return [ImageHistoryEntry(id=img.id, created=img.created, created_by="/bin/sh -c #(nop) CMD [\"sh\"]",
                                  size=img.size, comment="", empty_layer=False, layer_digest="sha256:" + "ab" * 32)]

    async def tag_image(self, source: str, target: str) -> str:
        self.calls.append(("tag", source, target))
        self._image(source).tags.append(target)
        return target

    async def save_images(self, refs: list[str], output) -> list[str]:
        self.calls.append(("save", tuple(refs), str(output)))
        return [self._image(r).id for r in refs]

    async def prune_images(self, *, all: bool = False):
        from hypr_engine.models import ImagePruneReport

        self.calls.append(("image prune", all))
        return ImagePruneReport(deleted=[], untagged=[], bytes_reclaimed=0)

    async def create_vm(self, spec: VmSpec) -> VmInfo:
        n = len(self.vms) + 10
        vm = _vm(n, spec.name or f"vm{n}", spec.image, "created", age=0, command=spec.command)
        self.vms.append(vm)
        return vm

    async def vm_ports(self, ref: str) -> list:
        from hypr_engine.net.ports import PortBinding

        vm = await self.get_vm(ref)
        return [PortBinding("0.0.0.0", 8080, 80, "tcp")] if vm.state == "running" else []

    async def system_info(self) -> dict:
        running = sum(v.state == "running" for v in self.vms)
        return {
            "version": "0.1.0", "mode": self.mode, "data_dir": "/home/dev/.local/share/hypr",
            "runtime_dir": "/run/user/1000/hypr",
            "accelerator": {"name": "tcg", "reason": "/dev/kvm is present but nested KVM does not work"},
            "kernel": {"path": "/home/dev/.cache/hypr/kernel/vmlinux", "kind": "pvh", "reason": "HYPR kernel"},
            "initramfs": {"path": "/home/dev/.cache/hypr/guest/initramfs.cpio.gz", "reason": "kestrel"},
            "qemu": "/usr/bin/qemu-system-x86_64",
            "vms": {"total": len(self.vms), "running": running}, "images": len(self.images),
        }

    async def list_networks(self) -> list:
        """The default network and one user network holding the first two VMs."""
        from hypr_engine.models import EndpointInfo, NetworkInfo

        eps = [EndpointInfo(vm.id, vm.name, f"10.89.0.{i + 2}", f"02:00:00:00:00:{i + 2:02x}")
               for i, vm in enumerate(self.vms[:2])]
        return [NetworkInfo("d" * 64, "default", "gvproxy", "192.168.127.0/24", "192.168.127.1", False, {},
                            FIXED_NOW - 86400),
                NetworkInfo("b" * 64, "backend", "bridge", "10.89.0.0/24", "10.89.0.1", False, {}, FIXED_NOW, eps)]

    async def get_network(self, ref: str):
        from hypr_engine.errors import NotFound

        for net in await self.list_networks():
            if ref in (net.name, net.id) or net.id.startswith(ref):
                return net
        raise NotFound(f"no such network: {ref}")


class _LogFileVms:
    def __init__(self, vm: VmInfo, path: Path) -> None:
        self.vm, self.path = vm, path

    async def get(self, ref: str) -> VmInfo:
        return self.vm

    def log_path(self, vm_id: str) -> Path:
        return self.path


class LogFileClient(FakeClient):
    """The fake HyprClient with one VM whose log is a real file in HYPR's record format
    (`<ns> <kind> <text>` lines, logfile.py): `read_logs` and `search_logs` are the embedded
    transport's own, over the engine's LogView; `logs(follow=True, tail=0)` yields a record
    for each `append`. The paged log view and bench/logview.py use it: no VM, no engine."""

    def __init__(self, path: Path, *, running: bool = True) -> None:
        vm = _vm(1, "big", "docker.io/library/busybox:latest", "running" if running else "exited",
                 age=3600, up=3600 if running else None)
        super().__init__(vms=[vm], images=[])
        from hypr_engine._embedded import EmbeddedTransport

        self.path = Path(path)
        self._transport = EmbeddedTransport(SimpleNamespace(vms=_LogFileVms(vm, self.path)))
        self._appended = asyncio.Condition()
        self._sequence = 0

    async def read_logs(self, ref: str, **kwargs):
        return await self._transport.read_logs(ref, **kwargs)

    def search_logs(self, ref: str, pattern: str, **kwargs):
        return self._transport.search_logs(ref, pattern, **kwargs)

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None, **kwargs):
        if tail is None or not follow:
            raise AssertionError("the paged log view reads pages; it streams only new records")

        async def gen():
            seen = self._sequence
            while self._find(ref).state == "running":
                async with self._appended:
                    await self._appended.wait_for(lambda seen=seen: self._sequence > seen)
                for _ in range(self._sequence - seen):
                    yield LogRecord(0, "o", b"")
                seen = self._sequence
        return gen()

    async def append(self, lines: list[tuple[int, str, bytes]]) -> None:
        """Write records to the log file, as the VM's log writer does, and tell the followers."""
        with open(self.path, "ab") as f:
            f.write(b"".join(b"%d %s %s\n" % (t, kind.encode(), payload) for t, kind, payload in lines))
        async with self._appended:
            self._sequence += len(lines)
            self._appended.notify_all()
