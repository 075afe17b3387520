"""VMs boot with the fallback kernel: Debian's generic kernel, its drivers loaded
as modules by kestrel from the initramfs, the devices found through ACPI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CACHE

pytestmark = pytest.mark.vm


@pytest.fixture
def debian(hypr_home):
    releases = sorted(p.parent.name for p in (CACHE / "debian-kernel").glob("*/.complete"))
    if not releases:
        pytest.fail(f"no Debian kernel in {CACHE / 'debian-kernel'}: run ./dev setup (kernel_build/fallback.sh)")
    hypr_home.env["HYPR_KERNEL_KIND"] = "debian"
    return releases[-1]


def test_system_info_names_the_debian_kernel_and_why(hypr_home, debian):
    info = json.loads(hypr_home.out("system", "info", "--format", "json"))
    assert info["kernel"]["kind"] == "debian"
    assert debian in info["kernel"]["path"]
    assert "forced by HYPR_KERNEL_KIND=debian" in info["kernel"]["reason"]
    assert "Debian's generic kernel" in info["kernel"]["reason"]
    assert "/guest/fallback/" in info["initramfs"]["path"]
    assert "modules" in info["initramfs"]["reason"]


def test_run_rm_output_and_exit_code(hypr_home, busybox, debian):
    proc = hypr_home.run("run", "--rm", busybox, "sh", "-c", "uname -r; echo hello; exit 7")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout.decode().split("\n") == [debian, "hello", ""]
    assert hypr_home.out("ps", "-aq") == ""


def test_ext4_writable_layer_exec_and_stop_start(hypr_home, busybox, debian):
    hypr_home.run("run", "-d", "--name", "fb", busybox, "sleep", "600", check=True)
    # The writable layer is the ext4 disk (its module loaded, its device mounted).
    assert hypr_home.out("exec", "fb", "ls", "/proc/fs/ext4") == "vdb\n"
    modules = {line.split()[0] for line in hypr_home.out("exec", "fb", "cat", "/proc/modules").splitlines()}
    assert {"virtio_mmio", "virtio_blk", "virtio_console", "squashfs", "overlay", "ext4",
            "9p", "9pnet_virtio", "virtio_net"} <= modules
    hypr_home.run("exec", "fb", "sh", "-c", "echo kept > /root/note", check=True)
    hypr_home.run("stop", "-t", "5", "fb", check=True)
    hypr_home.run("start", "fb", check=True)
    assert hypr_home.out("exec", "fb", "cat", "/root/note") == "kept\n"
    hypr_home.run("rm", "-f", "fb", check=True)
