"""The per-VM boot configuration: a field list in a cpio segment.

The kernel command line is limited to 2 KiB, too little for a real environment,
so the VM's configuration travels as `/hypr/config` in a small `newc` cpio that
is appended to kestrel's shared initramfs (Linux unpacks concatenated cpio
archives in order). Format: guest_agent/PROTOCOL.md, "Boot configuration".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.agent.codec import encode_fields
from hypr_engine.health import HealthConfig


class BootTag(enum.IntEnum):
    ARGV = 1
    ENV = 2
    WORKDIR = 3
    USER = 4
    HOSTNAME = 5
    STOP_SIGNAL = 6
    ROOT_DEVICE = 7
    UPPER_DEVICE = 8
    HOSTS = 9
    RESOLV = 10
    VM_ID = 11
    ATTACH_WAIT_MS = 12
    TMPFS_SIZE_MB = 13
    HEALTH_ARGV = 14
    HEALTH_INTERVAL_MS = 15
    HEALTH_TIMEOUT_MS = 16
    HEALTH_RETRIES = 17
    HEALTH_START_PERIOD_MS = 18
    # Mounts (volumes, bind shares, tmpfs): five parallel lists, one entry per mount,
    # in mount order (guest_agent/mounts.c).
    MOUNT_TYPE = 19      # ext4 | 9p | tmpfs
    MOUNT_SOURCE = 20    # ext4: the virtio-blk serial; 9p: the mount tag; tmpfs: "tmpfs"
    MOUNT_TARGET = 21    # absolute path in the VM
    MOUNT_DATA = 22      # the file system's option string
    MOUNT_FLAGS = 23     # comma list: ro, nosuid, nodev, noexec, populate (copy the image's files into an empty volume)
    NIC = 25            # repeated, one per interface in order: "MAC ADDR/PREFIX GATEWAY|- MTU"


@dataclass
class BootConfig:
    vm_id: str
    argv: list[str]
    env: list[str]
    hostname: str
    root_device: str = "/dev/vda"
    upper_device: str | None = "/dev/vdb"
    workdir: str | None = None
    user: str | None = None
    stop_signal: int = 15
    hosts: str = ""
    resolv: str = ""
    attach_wait_ms: int | None = None
    tmpfs_size_mb: int | None = None
    health: "HealthConfig | None" = None
    mounts: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # type, source, target, data, flags
    nics: list[str] = field(default_factory=list)   # GuestNic.encode() of each NIC (hypr_engine/net/driver.py)

    def encode(self) -> bytes:
        f: list[tuple[int, bytes | str | int | None]] = [(BootTag.VM_ID, self.vm_id)]
        f += [(BootTag.ARGV, a) for a in self.argv]
        f += [(BootTag.ENV, e) for e in self.env]
        f.append((BootTag.HOSTNAME, self.hostname))
        f.append((BootTag.ROOT_DEVICE, self.root_device))
        if self.upper_device:
            f.append((BootTag.UPPER_DEVICE, self.upper_device))
        if self.workdir:
            f.append((BootTag.WORKDIR, self.workdir))
        if self.user:
            f.append((BootTag.USER, self.user))
        f.append((BootTag.STOP_SIGNAL, self.stop_signal))
        if self.hosts:
            f.append((BootTag.HOSTS, self.hosts))
        if self.resolv:
            f.append((BootTag.RESOLV, self.resolv))
        if self.attach_wait_ms is not None:
            f.append((BootTag.ATTACH_WAIT_MS, self.attach_wait_ms))
        if self.tmpfs_size_mb is not None:
            f.append((BootTag.TMPFS_SIZE_MB, self.tmpfs_size_mb))
        if self.health is not None:
            f += [(BootTag.HEALTH_ARGV, a) for a in self.health.argv]
            f += [
                (BootTag.HEALTH_INTERVAL_MS, self.health.interval_ms),
                (BootTag.HEALTH_TIMEOUT_MS, self.health.timeout_ms),
                (BootTag.HEALTH_RETRIES, self.health.retries),
                (BootTag.HEALTH_START_PERIOD_MS, self.health.start_period_ms),
            ]
        for tag, column in ((BootTag.MOUNT_TYPE, 0), (BootTag.MOUNT_SOURCE, 1), (BootTag.MOUNT_TARGET, 2),
                            (BootTag.MOUNT_DATA, 3), (BootTag.MOUNT_FLAGS, 4)):
            f += [(tag, m[column]) for m in self.mounts]
        f += [(BootTag.NIC, nic) for nic in self.nics]
        return encode_fields(f)


def _cpio_entry(name: str, data: bytes, mode: int, ino: int) -> bytes:
    namez = name.encode() + b"\0"
    header = (
        "070701"
        + "".join(
            f"{v:08X}"
            for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(namez), 0)
        )
    ).encode()
    out = header + namez
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def config_cpio(config: BootConfig) -> bytes:
    """A newc archive holding /hypr and /hypr/config, ending with TRAILER!!!."""
    body = _cpio_entry("hypr", b"", 0o040755, 1)
    body += _cpio_entry("hypr/config", config.encode(), 0o100600, 2)
    body += _cpio_entry("TRAILER!!!", b"", 0, 0)
    return body + b"\0" * (-len(body) % 512)


def write_initrd(base_initramfs: Path, config: BootConfig, out: Path) -> None:
    """The VM's initrd: kestrel's shared initramfs followed by its config segment."""
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as dst:
        with open(base_initramfs, "rb") as src:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        dst.write(config_cpio(config))
    tmp.replace(out)
