"""The QEMU adapter: a VM's launch description in, QEMU's argv out.

Everything QEMU-specific lives here; the supervisor only runs the argv it is
given. The machine is `microvm` (no firmware, virtio-mmio devices). With
`acpi` the kernel finds the devices in ACPI tables (24 slots; the Debian
fallback kernel can only do this, it lacks VIRTIO_MMIO_CMDLINE_DEVICES);
without, QEMU lists them on the kernel command line (8 slots).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.vmm.devices import MICROVM_ACPI_SLOTS, MICROVM_SLOTS, Device, DevicePlan

LOG_PORT = "org.hypr.log"
AGENT_PORT = "org.hypr.agent"


@dataclass
class VmLaunch:
    """What one boot of a VM needs, as files and numbers."""

    qemu: str
    accel: str               # "kvm" | "tcg"
    kernel: Path
    initrd: Path
    rootfs: Path             # read-only squashfs
    upper: Path | None       # ext4 writable layer; None: tmpfs in the guest
    console_log: Path        # kernel messages (ttyS0)
    workload_log: Path       # the log port's file
    agent_socket: Path       # QEMU listens; the supervisor connects
    memory_mb: int = 256
    cpus: int = 1
    tsc_khz: int | None = None
    extra_cmdline: list[str] = field(default_factory=list)
    acpi: bool = False       # describe the devices in ACPI tables, not on the command line
    mount_devices: list[Device] = field(default_factory=list)   # volumes and bind shares (volumes.py)


def device_plan(launch: VmLaunch) -> DevicePlan:
    plan = DevicePlan(slots=MICROVM_ACPI_SLOTS if launch.acpi else MICROVM_SLOTS)
    plan.add(Device("disk", "root filesystem", [
        "-drive", f"id=root,file={launch.rootfs},format=raw,if=none,readonly=on,cache=unsafe",
        "-device", "virtio-blk-device,drive=root",
    ]))
    if launch.upper is not None:
        plan.add(Device("disk", "writable layer", [
            "-drive", f"id=upper,file={launch.upper},format=raw,if=none,cache=writeback,discard=unmap",
            "-device", "virtio-blk-device,drive=upper",
        ]))
    plan.add(Device("serial", "log and agent ports", [
        "-device", "virtio-serial-device,max_ports=4",
        "-chardev", f"file,id=log,path={launch.workload_log},append=on",
        "-device", f"virtserialport,chardev=log,name={LOG_PORT}",
        "-chardev", f"socket,id=agent,path={launch.agent_socket},server=on,wait=off",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
    ]))
    plan.add(Device("rng", "entropy", ["-device", "virtio-rng-device"]))
    for device in launch.mount_devices:
        plan.add(device)
    return plan


def kernel_cmdline(launch: VmLaunch) -> str:
    parts = [
        "console=ttyS0",
        "reboot=t",          # reboot through the triple-fault path: immediate under -no-reboot
        "panic=-1",          # a guest panic reboots, which ends QEMU
        "rdinit=/init",
        "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
        "cryptomgr.notests",
    ]
    if launch.accel == "tcg" and launch.tsc_khz:
        parts.append(f"tsc_early_khz={launch.tsc_khz}")
    return " ".join(parts + launch.extra_cmdline)


def build_argv(launch: VmLaunch, plan: DevicePlan | None = None) -> list[str]:
    plan = plan or device_plan(launch)
    accel = "kvm" if launch.accel == "kvm" else "tcg,tb-size=64"
    return [
        launch.qemu,
        "-M", f"microvm,acpi={'on' if launch.acpi else 'off'},x-option-roms=off",
        "-accel", accel,
        "-cpu", "host" if launch.accel == "kvm" else "qemu64",
        "-m", str(launch.memory_mb),
        "-smp", str(launch.cpus),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(launch.kernel),
        "-initrd", str(launch.initrd),
        "-append", kernel_cmdline(launch),
        "-serial", f"file:{launch.console_log}",
        *plan.qemu_args(),
    ]
