"""Volumes: named (and anonymous) storage that outlives VMs, and what a VM mounts.

Storage: one sparse ext4 disk image per volume, `volumes/<name>/disk.ext4`. A disk is
what a microVM mounts natively and fastest (no host helper process, the guest's
own page cache, real POSIX semantics for databases), and a sparse image takes only
the space the guest wrote. The cost is that ext4 is a single-kernel file system:
two running VMs cannot mount one volume (each kernel would corrupt the other's
view), so HYPR refuses the second VM with a clear error instead of offering
Docker's sharing; share a host directory (`-v /host/dir:/path`, 9p) between VMs.

Populating a new volume from the image (Docker's copy-up) happens in the guest:
kestrel copies the image's directory into an *empty* volume before mounting it
there (guest_agent/mounts.c). The guest already has the image's files with their
real owners, modes and device numbers; doing it on the host would need root to keep
ownership and a second unpacking of the image.

Bind mounts are 9p shares (`-fsdev local` + `virtio-9p-device`), read-only ones with
`readonly=on` so QEMU itself refuses writes, not only the guest's mount flags.
Security model `passthrough` when HYPR runs as root: files the guest creates get the
guest's uid/gid on the host, as with Docker bind mounts (so a guest's root can leave
root-owned and setuid files in the shared directory, as a container's root can);
`none` otherwise (QEMU's user owns them; a chown from the guest is ignored).
virtio-fs would be used where `virtiofsd` exists; this machine has none, so that
path is not written (a later task: it needs a helper process per share).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from hypr_engine.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from hypr_engine.models import VolumeInfo
from hypr_engine.mounts import check_volume_name, parse_size_option
from hypr_engine.paths import Layout
from hypr_engine.state.db import Database
from hypr_engine.state.machine import ACTIVE_STATES
from hypr_engine.vmm.devices import Device

DEFAULT_VOLUME_BYTES = 8 << 30       # sparse: only what is written takes space
MIN_VOLUME_BYTES = 8 << 20           # ext4 with a journal needs a few MiB
DISK_NAME = "disk.ext4"
NINEP_OPTIONS = "trans=virtio,version=9p2000.L,msize=262144,cache=none"


def _qemu_value(text: str) -> str:
    """A QEMU option value: commas are doubled."""
    return text.replace(",", ",,")


def allocated_bytes(path: Path) -> int:
    """Host space a file or tree takes (allocated blocks, as `du`), 0 if missing."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_blocks * 512
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class VolumeService:
    def __init__(self, db: Database, layout: Layout) -> None:
        self._db = db
        self._layout = layout

    @property
    def root(self) -> Path:
        return self._layout.data / "volumes"

    def disk(self, name: str) -> Path:
        return self.root / name / DISK_NAME

    # --- lookup ---------------------------------------------------------------------

    async def _users(self) -> dict[str, list[tuple[str, str, str]]]:
        """volume name -> [(vm id, vm name, state)] of every VM whose spec mounts it."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for row in await self._db.fetchall("SELECT id, name, state, spec_json FROM vms ORDER BY created_at"):
            for m in json.loads(row["spec_json"]).get("mounts") or []:
                if m.get("type") == "volume" and m.get("source"):
                    out.setdefault(m["source"], []).append((row["id"], row["name"], row["state"]))
        return out

    def _info(self, row, users: dict) -> VolumeInfo:
        disk = self.disk(row["name"])
        return VolumeInfo(
            name=row["name"], driver=row["driver"], mountpoint=str(disk),
            labels=json.loads(row["labels_json"]), options=json.loads(row["options_json"]),
            size_bytes=row["size_bytes"], allocated_bytes=allocated_bytes(disk),
            anonymous=bool(row["anonymous"]), created_at=row["created_at"],
            used_by=[name for _, name, _ in users.get(row["name"], [])],
        )

    async def list(self, filters: list[tuple[str, str]] = ()) -> list[VolumeInfo]:
        """Docker's filters: name= (substring), label=KEY[=VALUE], dangling=true|false, driver=."""
        users = await self._users()
        rows = await self._db.fetchall("SELECT * FROM volumes ORDER BY name")
        out = []
        for row in rows:
            info = self._info(row, users)
            if all(_matches(info, key, value) for key, value in filters):
                out.append(info)
        return out

    async def get(self, name: str) -> VolumeInfo:
        row = await self._db.fetchone("SELECT * FROM volumes WHERE name=?", (name,))
        if row is None:
            raise NotFound(f"no such volume: {name}")
        return self._info(row, await self._users())

    # --- create ---------------------------------------------------------------------

    async def create(self, name: str | None = None, *, labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None, anonymous: bool = False) -> VolumeInfo:
        labels = dict(labels or {})
        options = dict(options or {})
        if name is None:
            name, anonymous = os.urandom(32).hex(), True
        check_volume_name(name)
        unknown = set(options) - {"size"}
        if unknown:
            raise InvalidArgument(f"unknown volume option {sorted(unknown)[0]!r}: the local driver of HYPR "
                                  "knows size= (e.g. --opt size=10g)")
        size = parse_size_option(options["size"], "volume size") if "size" in options else DEFAULT_VOLUME_BYTES
        if size < MIN_VOLUME_BYTES:
            raise InvalidArgument(f"invalid volume size {options['size']!r}: at least {MIN_VOLUME_BYTES >> 20}m")
        existing = await self._db.fetchone("SELECT * FROM volumes WHERE name=?", (name,))
        if existing is not None:
            if (labels or options) and (json.loads(existing["labels_json"]) != labels
                                        or json.loads(existing["options_json"]) != options):
                raise AlreadyExists(f"volume {name} already exists with other labels or options")
            return await self.get(name)  # Docker: creating an existing volume returns it
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{os.urandom(6).hex()}"
        staging.mkdir()
        try:
            await make_volume_disk(staging / DISK_NAME, size)
            try:
                await self._db.execute(
                    "INSERT INTO volumes (name, driver, labels_json, options_json, size_bytes, anonymous, created_at) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (name, "local", json.dumps(labels), json.dumps(options), size, int(anonymous), time.time()),
                )
            except Exception as exc:
                if "UNIQUE" in str(exc):  # created meanwhile by another client
                    return await self.get(name)
                raise
            try:
                staging.rename(self.root / name)
            except OSError:
                await self._db.execute("DELETE FROM volumes WHERE name=?", (name,))
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return await self.get(name)

    # --- remove / prune -------------------------------------------------------------

    async def remove(self, name: str, *, force: bool = False) -> str:
        """Refused while any VM's spec mounts it; with force, only while a VM using it is
        active (its QEMU has the disk open). Docker's `volume rm -f` of a missing one is quiet."""
        row = await self._db.fetchone("SELECT name FROM volumes WHERE name=?", (name,))
        if row is None:
            if force:
                return name
            raise NotFound(f"no such volume: {name}")
        users = (await self._users()).get(name, [])
        active = [vm for _, vm, state in users if state in {s.value for s in ACTIVE_STATES}]
        if active:
            raise Conflict(f"volume {name} is in use by running VM {', '.join(active)}: stop it first")
        if users and not force:
            raise Conflict(f"volume {name} is in use by VM {', '.join(vm for _, vm, _ in users)}: "
                           "remove the VM first, or use volume rm -f")
        await self._delete(name)
        return name

    async def _delete(self, name: str) -> None:
        # Rename first: a crash leaves a .tmp- directory that prune sweeps, never a half volume.
        trash = self.root / f".tmp-rm-{os.urandom(6).hex()}"
        try:
            (self.root / name).rename(trash)
        except FileNotFoundError:
            pass
        await self._db.execute("DELETE FROM volumes WHERE name=?", (name,))
        shutil.rmtree(trash, ignore_errors=True)

    async def prune(self, *, all: bool = False) -> tuple[list[str], int]:
        """Remove volumes no VM uses: anonymous ones, or every one with all (Docker 23+).
        Returns the names and the host bytes reclaimed."""
        users = await self._users()
        removed, reclaimed = [], 0
        for row in await self._db.fetchall("SELECT name, anonymous FROM volumes ORDER BY name"):
            if row["name"] in users or not (all or row["anonymous"]):
                continue
            reclaimed += allocated_bytes(self.root / row["name"])
            await self._delete(row["name"])
            removed.append(row["name"])
        if self.root.is_dir():  # leftovers of interrupted creates and removes
            for stale in self.root.glob(".tmp-*"):
                if time.time() - stale.stat().st_mtime > 3600:
                    reclaimed += allocated_bytes(stale)
                    shutil.rmtree(stale, ignore_errors=True)
        return removed, reclaimed

    # --- what a VM mounts ---------------------------------------------------------

    async def prepare(self, mounts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Before a VM is recorded: bind sources must exist and be directories; missing
        volumes are created (anonymous ones get their name). Returns the mounts as stored
        and the volumes created here (the caller removes them if the VM is not created)."""
        created: list[str] = []
        out = []
        try:
            for m in mounts:
                m = dict(m)
                if m["type"] == "bind":
                    check_bind_source(m["source"])
                elif m["type"] == "volume":
                    if not m["source"]:
                        m["source"] = (await self.create(anonymous=True)).name
                        created.append(m["source"])
                    elif await self._db.fetchone("SELECT 1 FROM volumes WHERE name=?", (m["source"],)) is None:
                        await self.create(m["source"])
                        created.append(m["source"])
                    m["disk"] = str(self.disk(m["source"]))   # inspect's Source
                out.append(m)
        except BaseException:
            await self.discard(created)
            raise
        return out, created

    async def anonymous_among(self, mounts: list[dict[str, Any]]) -> list[str]:
        """The anonymous volumes a VM mounts: Docker's --rm removes them with the VM."""
        names = [m["source"] for m in mounts or [] if m["type"] == "volume" and m["source"]]
        rows = await self._db.fetchall(
            f"SELECT name FROM volumes WHERE anonymous=1 AND name IN ({','.join('?' * len(names))})", names)
        return [row["name"] for row in rows]

    async def discard(self, names: list[str]) -> None:
        for name in names:
            await self._delete(name)

    async def boot_devices(self, vm_id: str, mounts: list[dict[str, Any]]) -> tuple[list[Device], list[tuple]]:
        """The QEMU devices and kestrel's mount entries (type, source, target, data, flags)
        of a VM's mounts. Refuses a volume another active VM has mounted, and re-creates a
        volume removed (volume rm -f) since the VM was created, as `-v` does."""
        devices: list[Device] = []
        entries: list[tuple] = []
        users = await self._users()
        active = {s.value for s in ACTIVE_STATES}
        model = "passthrough" if os.geteuid() == 0 else "none"
        for index, m in enumerate(mounts):
            target, ro = m["target"], bool(m.get("readonly"))
            if m["type"] == "volume":
                name = m["source"]
                others = [vm for vid, vm, state in users.get(name, []) if vid != vm_id and state in active]
                if others:
                    raise Conflict(
                        f"volume {name} is mounted by running VM {', '.join(others)}: a HYPR volume is an ext4 "
                        "disk that one VM mounts at a time; stop that VM, or share a host directory "
                        "between VMs with -v /host/dir:" + target)
                if not self.disk(name).exists():
                    await self.create(name)
                serial = f"hyprvol{index}"
                drive = (f"id=vol{index},file={_qemu_value(str(self.disk(name)))},format=raw,if=none,"
                         f"cache=writeback,discard=unmap" + (",readonly=on" if ro else ""))
                devices.append(Device("disk", f"volume {name} at {target}",
                                      ["-drive", drive, "-device", f"virtio-blk-device,drive=vol{index},serial={serial}"]))
                flags = ["ro"] if ro else ([] if m.get("nocopy") else ["populate"])
                # noload: a read-only device cannot replay a journal (an unclean end of the writer)
                entries.append(("ext4", serial, target, "noload" if ro else "", ",".join(flags)))
            elif m["type"] == "bind":
                check_bind_source(m["source"])
                tag = f"hypr{index}"
                # 9p exports directories: a single file goes through its directory's share, which
                # kestrel mounts out of the workload's sight and binds the file from.
                is_file = Path(m["source"]).is_file()
                shared = str(Path(m["source"]).parent) if is_file else m["source"]
                fsdev = (f"local,id=fs{index},path={_qemu_value(shared)},security_model={model}"
                         + (",readonly=on" if ro else ""))
                devices.append(Device("share", f"bind {m['source']} at {target}",
                                      ["-fsdev", fsdev, "-device", f"virtio-9p-device,fsdev=fs{index},mount_tag={tag}"]))
                if is_file:
                    entries.append(("9pfile", f"{tag}/{Path(m['source']).name}", target, NINEP_OPTIONS,
                                    "ro" if ro else ""))
                else:
                    entries.append(("9p", tag, target, NINEP_OPTIONS, "ro" if ro else ""))
            else:
                options = m.get("options") or {}
                data = [f"mode={options['mode']:o}"] if "mode" in options else []
                if "size" in options:
                    data.append(f"size={options['size']}")
                flags = [f for f in options.get("flags", []) if f in ("ro", "noexec", "nosuid", "nodev")]
                entries.append(("tmpfs", "tmpfs", target, ",".join(data), ",".join(flags)))
        return devices, entries


def devices_needed(mounts: list[dict[str, Any]]) -> int:
    """Device slots a VM's mounts take: one per volume and per bind mount, none for tmpfs."""
    return sum(1 for m in mounts if m["type"] in ("volume", "bind"))


def check_bind_source(source: str) -> None:
    path = Path(source)
    if not path.exists():
        raise NotFound(f"bind source path does not exist: {source}")
    if not (path.is_dir() or path.is_file()):
        raise InvalidArgument(f"bind source {source} is neither a directory nor a regular file")


async def make_volume_disk(path: Path, size: int) -> None:
    """A sparse ext4 image with an empty root owned by root: no lost+found, so a fresh
    volume is empty as Docker's are (postgres' initdb refuses a non-empty directory)."""
    with open(path, "wb") as f:
        f.truncate(size)
    for argv in (
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
         str(path)],
        ["debugfs", "-w", "-R", "rmdir lost+found", str(path)],
    ):
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Unavailable(f"{argv[0]} did not finish within 60 s") from None
        if proc.returncode != 0:
            raise Unavailable(f"{argv[0]} failed: {out.decode(errors='replace').strip()}")


def _matches(info: VolumeInfo, key: str, value: str) -> bool:
    if key == "name":
        return value in info.name
    if key == "driver":
        return info.driver == value
    if key == "dangling":
        return (not info.used_by) == (value.lower() in ("1", "true"))
    if key == "label":
        k, sep, v = value.partition("=")
        return k in info.labels and (not sep or info.labels[k] == v)
    raise InvalidArgument(f"invalid volume filter {key!r}: use name=, label=KEY[=VALUE], dangling=true|false or driver=")


def check_device_budget(mounts: list[dict[str, Any]], *, upper: bool, nics: int = 0) -> None:
    """Refuse, before anything is created, a VM whose mounts and `nics` network interfaces
    exceed the machine's device slots (vmm/devices.py): the plan QEMU would get, built
    with placeholder paths."""
    from hypr_engine.vmm import probe
    from hypr_engine.vmm.qemu import VmLaunch, device_plan

    try:
        acpi = probe.find_guest_artifacts().acpi
    except Exception:  # no kernel yet: the boot reports that, with its own reason
        return
    placeholder = Path("/")
    # NICs first, so an error names the mount that did not fit (what the user just added).
    devices = [Device("net", f"network interface {n + 1}") for n in range(nics)]
    devices += [Device("disk" if m["type"] == "volume" else "share",
                       f"{m['type']} {m['source'] or '(anonymous)'} at {m['target']}")
                for m in mounts if m["type"] in ("volume", "bind")]
    device_plan(VmLaunch(qemu="", accel="tcg", kernel=placeholder, initrd=placeholder, rootfs=placeholder,
                         upper=placeholder if upper else None, console_log=placeholder,
                         workload_log=placeholder, agent_socket=placeholder, acpi=acpi,
                         mount_devices=devices))
