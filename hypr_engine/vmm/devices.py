"""The device plan: what a VM can attach, within what the machine type allows.

QEMU's `microvm` machine offers 24 virtio-mmio slots with ACPI and exactly 8
without (a ninth device fails with "No 'virtio-bus' bus found", DESIGN.md).
Both HYPR's kernel and the Debian fallback boot with ACPI, which measured no
slower (docs/decisions.md). Every disk, NIC, share and the serial/rng devices
take one slot. The plan is checked before a
VM boots, so "too many volumes" is a clear error instead of a QEMU failure.

Slot use of an ordinary VM:
    root disk (squashfs) 1 · writable layer disk 1 (none with --rm: tmpfs)
    virtio-serial (log + agent ports, one device) 1 · rng 1 · NIC per network
leaving 19-20 slots for volumes, bind mounts and more NICs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypr_engine.errors import InvalidArgument

MICROVM_SLOTS = 8          # -M microvm,acpi=off
# -M microvm,acpi=on offers 24, but a guest with all 24 filled hangs in the kernel before
# /init (QEMU 7.2, HYPR kernel 6.1; 23 boot in 1.4 s: tests/vm/test_volumes.py), so the plan
# keeps the last one free.
MICROVM_ACPI_SLOTS = 23


@dataclass
class Device:
    kind: str      # disk | serial | rng | net | share
    purpose: str   # "root", "upper", "volume pgdata", ...
    args: list[str] = field(default_factory=list)  # the QEMU arguments that create it


@dataclass
class DevicePlan:
    slots: int = MICROVM_SLOTS
    devices: list[Device] = field(default_factory=list)

    def add(self, device: Device) -> None:
        if len(self.devices) >= self.slots:
            used = ", ".join(d.purpose for d in self.devices)
            raise InvalidArgument(
                f"too many devices: {device.purpose} would be device {len(self.devices) + 1}, "
                f"but a microVM has {self.slots} slots (in use: {used})"
            )
        self.devices.append(device)

    @property
    def free(self) -> int:
        return self.slots - len(self.devices)

    def qemu_args(self) -> list[str]:
        out: list[str] = []
        for d in self.devices:
            out += d.args
        return out
