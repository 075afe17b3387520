"""The device plan refuses what the machine cannot attach, before QEMU starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypr_engine.errors import InvalidArgument
from hypr_engine.vmm.devices import Device
from hypr_engine.vmm.qemu import VmLaunch, build_argv, device_plan


def _launch(acpi: bool, upper: bool = True) -> VmLaunch:
    return VmLaunch(qemu="qemu", accel="tcg", kernel=Path("k"), initrd=Path("i"), rootfs=Path("r"),
                    upper=Path("u") if upper else None, console_log=Path("c"), workload_log=Path("l"),
                    agent_socket=Path("a"), acpi=acpi)


@pytest.mark.parametrize("acpi, slots", [(False, 8), (True, 23)])  # 24th: guest hangs (devices.py)
def test_slots_and_refusal(acpi, slots):
    plan = device_plan(_launch(acpi))
    assert [d.purpose for d in plan.devices] == ["root filesystem", "writable layer", "log and agent ports", "entropy"]
    for n in range(plan.free):
        plan.add(Device("disk", f"volume v{n}"))
    assert plan.free == 0 and len(plan.devices) == slots
    with pytest.raises(InvalidArgument, match=f"a microVM has {slots} slots"):
        plan.add(Device("disk", "volume one-too-many"))


def test_rm_vms_have_no_writable_layer_disk():
    plan = device_plan(_launch(True, upper=False))
    assert "writable layer" not in [d.purpose for d in plan.devices]


def test_argv_selects_acpi():
    assert "microvm,acpi=on,x-option-roms=off" in build_argv(_launch(True))
    assert "microvm,acpi=off,x-option-roms=off" in build_argv(_launch(False))
