"""Host probing: which accelerator, which kernel, which initramfs, and why.

The answers are plain data (`HostInfo`) that `hypr system info` prints as-is,
so a user can see why HYPR chose TCG over KVM or the fallback kernel.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hypr_engine.errors import Unavailable
from hypr_engine.paths import cache_dir

KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12


@dataclass(frozen=True)
class Choice:
    value: str
    reason: str


def probe_accelerator() -> Choice:
    """KVM only where it really works; TCG otherwise. `HYPR_ACCEL` overrides.

    A /dev/kvm node is not enough: on these machines it exists but nested
    virtualisation does not work (the guest hangs after the firmware stage) and
    the CPU flags show neither vmx nor svm. So KVM needs the node to open
    read-write, answer KVM_GET_API_VERSION with 12, and the CPU to advertise
    vmx or svm.
    """
    forced = os.environ.get("HYPR_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return Choice(forced, f"forced by HYPR_ACCEL={forced}")
    if forced:
        return Choice("tcg", f"HYPR_ACCEL={forced!r} is not kvm or tcg; using tcg")
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return Choice("tcg", f"/dev/kvm cannot be opened ({exc.strerror})")
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as exc:
        return Choice("tcg", f"/dev/kvm does not answer KVM_GET_API_VERSION ({exc.strerror})")
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return Choice("tcg", f"/dev/kvm reports API version {version}, not {KVM_API_VERSION}")
    flags = _cpu_flags()
    if not flags & {"vmx", "svm"}:
        return Choice("tcg", "/dev/kvm exists but the CPU advertises neither vmx nor svm (nested KVM does not work)")
    return Choice("kvm", "/dev/kvm answers and the CPU advertises hardware virtualisation")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_tsc_khz() -> int | None:
    """The host TSC frequency, for the guest's `tsc_early_khz=`.

    Under TCG, 10-35 % of boots hang calibrating the TSC against the PIT unless
    the kernel is told the frequency (DESIGN.md).
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":", 1)[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


def find_qemu() -> str:
    path = os.environ.get("HYPR_QEMU") or shutil.which("qemu-system-x86_64")
    if not path:
        raise Unavailable("qemu-system-x86_64 not found; run the set-up command from the README")
    return path


@dataclass(frozen=True)
class GuestArtifacts:
    kernel: Path
    kernel_kind: str          # "hypr" (the project's own), "debian" (fallback) or "custom"
    kernel_reason: str
    initramfs: Path
    initramfs_reason: str
    notes: list[str] = field(default_factory=list)
    # What the QEMU adapter must do differently for this kernel: Debian's finds
    # virtio-mmio devices only through ACPI (it lacks VIRTIO_MMIO_CMDLINE_DEVICES).
    acpi: bool = False
    cmdline: tuple[str, ...] = ()

    def launch_options(self) -> dict:
        """The per-kernel fields of the QEMU adapter's VmLaunch."""
        return {"acpi": self.acpi, "extra_cmdline": list(self.cmdline)}


KERNEL_KINDS = ("hypr", "debian")


def _built_with(config: Path, line: str) -> bool:
    """Whether a kernel's saved .config has `line` (kernels built before ACPI lack it)."""
    try:
        return line in config.read_text().splitlines()
    except OSError:
        return False


def find_guest_artifacts() -> GuestArtifacts:
    """The kernel and kestrel's initramfs, and why.

    Kernel: `HYPR_KERNEL` if set; else `HYPR_KERNEL_KIND` (hypr or debian) if
    set, which must then exist; else the newest HYPR kernel set-up built into the
    cache (kernel_build/build.sh), else Debian's generic kernel that
    kernel_build/fallback.sh unpacked. Initramfs: `HYPR_INITRAMFS` if set, else
    the one set-up built from guest_agent/; with the Debian kernel, that one
    followed by the kernel's modules (hypr_engine/vmm/fallback.py).
    """
    cache = cache_dir()
    if env := os.environ.get("HYPR_INITRAMFS"):
        initramfs, ireason = Path(env), "HYPR_INITRAMFS is set"
    else:
        initramfs, ireason = cache / "guest" / "initramfs.cpio", "kestrel initramfs built by set-up"
    if not initramfs.is_file():
        raise Unavailable(f"no kestrel initramfs at {initramfs}; run the set-up command from the README")

    if env := os.environ.get("HYPR_KERNEL"):
        kernel = Path(env)
        if not kernel.is_file():
            raise Unavailable(f"guest kernel {kernel} does not exist")
        return GuestArtifacts(kernel, "custom", "HYPR_KERNEL is set", initramfs, ireason)

    forced = os.environ.get("HYPR_KERNEL_KIND", "").strip().lower()
    if forced and forced not in KERNEL_KINDS:
        raise Unavailable(f"HYPR_KERNEL_KIND={forced!r}: expected one of {', '.join(KERNEL_KINDS)}")
    built = sorted(cache.glob("kernel/*/vmlinux"), key=lambda p: p.stat().st_mtime)
    if forced != "debian" and built:
        kernel = built[-1]
        why = "forced by HYPR_KERNEL_KIND=hypr" if forced else "the HYPR kernel is built"
        acpi = _built_with(kernel.parent / "config", "CONFIG_ACPI=y")
        return GuestArtifacts(
            kernel, "hypr", f"{why} (kernel_build/build.sh, {kernel.parent.name})"
            + (", booted with ACPI (24 device slots)" if acpi else ", without ACPI (8 device slots)"),
            initramfs, ireason, acpi=acpi,
        )
    if forced == "hypr":
        raise Unavailable(
            f"HYPR_KERNEL_KIND=hypr but no HYPR kernel in {cache / 'kernel'}; "
            "build it with kernel_build/build.sh (the set-up command does)"
        )

    from hypr_engine.vmm import fallback

    debian = fallback.find_debian_kernel(cache)
    if debian is None:
        if forced:
            raise Unavailable(
                f"HYPR_KERNEL_KIND=debian but no Debian kernel in {cache / 'debian-kernel'}; "
                "fetch it with kernel_build/fallback.sh (the set-up command does)"
            )
        raise Unavailable(
            f"no guest kernel: neither a HYPR kernel in {cache / 'kernel'} (kernel_build/build.sh) "
            f"nor Debian's in {cache / 'debian-kernel'} (kernel_build/fallback.sh); "
            "run the set-up command from the README"
        )
    why = "forced by HYPR_KERNEL_KIND=debian" if forced else f"no HYPR kernel in {cache / 'kernel'}"
    kernel = fallback.ensure_vmlinux(debian)
    fallback_initramfs = fallback.ensure_initramfs(debian, initramfs, cache)
    return GuestArtifacts(
        kernel, "debian",
        f"{why}: fallback to Debian's generic kernel {debian.release} ({debian.package_version}, "
        "kernel_build/fallback.sh), booted through its PVH entry with ACPI",
        fallback_initramfs,
        f"{ireason}, followed by {len(fallback.NEEDED)} needed modules and their dependencies "
        f"from {debian.moddir}",
        acpi=True,
        # Its clocksource watchdog judges the TSC against jiffies, which lag under
        # a busy TCG host, and falls back to 4 ms jiffies; under TCG the TSC
        # follows the host's clock.
        cmdline=("tsc=reliable",),
    )
