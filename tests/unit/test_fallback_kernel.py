"""The fallback kernel's pieces that need no VM: which modules, in which order,
the initramfs segment, the vmlinux inside a bzImage, kernel selection, and what
kestrel passes a module from the command line (modparam.c, through ctypes)."""

from __future__ import annotations

import ctypes
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from hypr_engine.errors import Unavailable
from hypr_engine.vmm import fallback, probe
from hypr_engine.vmm.qemu import VmLaunch, build_argv, kernel_cmdline

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "6.1.0-99-amd64"


def fake_module(info: dict[str, str], body: bytes = b"\x90" * 64) -> bytes:
    """A minimal ELF64 relocatable file with a .modinfo section."""
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in info.items())
    shstrtab = b"\0.text\0.modinfo\0.shstrtab\0"
    data = body + modinfo + shstrtab
    shoff = 64 + len(data)
    shoff += -shoff % 8
    header = bytearray(64)
    header[:16] = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 4, 3)
    out = bytes(header) + data
    out += b"\0" * (shoff - len(out))

    def sh(name: int, offset: int, size: int, kind: int = 1) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, offset, size, 0, 0, 1, 0)

    out += sh(0, 0, 0, 0)
    out += sh(1, 64, len(body))
    out += sh(7, 64 + len(body), len(modinfo))
    out += sh(16, 64 + len(body) + len(modinfo), len(shstrtab), 3)
    return out


def sign(module: bytes, sig: bytes = b"S" * 40) -> bytes:
    return module + sig + struct.pack(">BBBBBxxxI", 0, 0, 2, 0, 0, len(sig)) + fallback.SIGNATURE_MAGIC


# name -> (path under lib/modules/<release>, modinfo)
MODULES = {
    "virtio_ring": ("kernel/drivers/virtio/virtio_ring.ko", {"depends": ""}),
    "virtio": ("kernel/drivers/virtio/virtio.ko", {"depends": "virtio_ring"}),
    "virtio_mmio": ("kernel/drivers/virtio/virtio_mmio.ko", {"depends": "virtio,virtio_ring"}),
    "virtio_rng": ("kernel/drivers/char/hw_random/virtio-rng.ko", {"depends": "virtio,virtio_ring"}),
    "crc16": ("kernel/lib/crc16.ko", {"depends": ""}),
    "jbd2": ("kernel/fs/jbd2/jbd2.ko", {"softdep": "pre: crypto-crc32c", "depends": ""}),
    "ext4": ("kernel/fs/ext4/ext4.ko", {"softdep": "pre: crypto-crc32c", "depends": "jbd2,crc16"}),
    "crc32c_generic": ("kernel/crypto/crc32c_generic.ko", {"depends": ""}),
}


def make_kernel_dir(root: Path, modules=MODULES, builtin=("rng_core",), dep_file: str | None = None) -> Path:
    kdir = root / RELEASE
    moddir = kdir / "lib" / "modules" / RELEASE
    moddir.mkdir(parents=True)
    for name, (path, info) in modules.items():
        (moddir / path).parent.mkdir(parents=True, exist_ok=True)
        (moddir / path).write_bytes(sign(fake_module({**info, "name": name})))
    (moddir / "modules.order").write_text("".join(p + "\n" for p, _ in modules.values()))
    (moddir / "modules.builtin").write_text("".join(f"kernel/x/{b.replace('_', '-')}.ko\n" for b in builtin))
    if dep_file is not None:
        (moddir / "modules.dep").write_text(dep_file)
    return kdir


def test_resolve_orders_dependencies_first_from_modinfo(tmp_path):
    index = fallback.ModuleIndex(make_kernel_dir(tmp_path) / "lib/modules" / RELEASE)
    order, builtin = fallback.resolve(index, ["virtio_mmio", "virtio-rng", "ext4", "rng-core"])
    # ext4's soft dependency on the crypto-crc32c alias brings crc32c_generic before it
    assert order == ["virtio_ring", "virtio", "virtio_mmio", "virtio_rng", "crc32c_generic", "jbd2", "crc16", "ext4"]
    assert builtin == ["rng_core"]


def test_modules_dep_is_used_when_present(tmp_path):
    # An installed kernel's modules.dep wins over the modules' own depends= lines.
    dep = "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko\nkernel/lib/crc16.ko:\nkernel/fs/jbd2/jbd2.ko:\n" \
          "kernel/crypto/crc32c_generic.ko:\n"
    index = fallback.ModuleIndex(make_kernel_dir(tmp_path, dep_file=dep) / "lib/modules" / RELEASE)
    assert fallback.resolve(index, ["ext4"])[0] == ["crc32c_generic", "crc16", "ext4"]


def test_unknown_module_and_cycles_are_clear_errors(tmp_path):
    mods = dict(MODULES)
    mods["a"] = ("kernel/a.ko", {"depends": "b"})
    mods["b"] = ("kernel/b.ko", {"depends": "a"})
    index = fallback.ModuleIndex(make_kernel_dir(tmp_path, mods) / "lib/modules" / RELEASE)
    with pytest.raises(Unavailable, match="neither built into"):
        fallback.resolve(index, ["ext4", "9p"])
    with pytest.raises(Unavailable, match="cycle: a -> b -> a"):
        fallback.resolve(index, ["a"])


def test_the_real_debian_kernel_resolves(tmp_path):
    """Against the package fallback.sh unpacked, when set-up has run."""
    kernel = fallback.find_debian_kernel(probe.cache_dir())
    if kernel is None:
        pytest.skip("no Debian kernel unpacked (kernel_build/fallback.sh)")
    order, _ = fallback.resolve(fallback.ModuleIndex(kernel.moddir))
    for need in fallback.NEEDED:
        assert need in order
    for before, after in [("virtio", "virtio_mmio"), ("jbd2", "ext4"), ("crc32c_generic", "ext4"),
                          ("9pnet", "9p"), ("netfs", "fscache"), ("failover", "net_failover"),
                          ("net_failover", "virtio_net")]:
        assert order.index(before) < order.index(after)


def test_signature_is_stripped():
    module = fake_module({"name": "x"})
    assert fallback.strip_signature(sign(module)) == module
    assert fallback.strip_signature(module) == module


def test_initramfs_is_base_then_a_modules_archive(tmp_path):
    kdir = make_kernel_dir(tmp_path / "k")
    base = tmp_path / "base.cpio"
    base.write_bytes(b"B" * 512)
    out = tmp_path / "initramfs.cpio"
    order = fallback.build_fallback_initramfs(kdir, base, out, ["virtio_mmio"])
    assert order == ["virtio_ring", "virtio", "virtio_mmio"]
    data = out.read_bytes()
    assert data[:512] == b"B" * 512 and len(data) % 512 == 0
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=data[512:], cwd=x, check=True)
    hypr = x / "lib/modules/hypr"
    files = ["00-virtio_ring.ko", "01-virtio.ko", "02-virtio_mmio.ko"]
    assert (hypr / "order").read_text().split() == files
    assert sorted(p.name for p in hypr.iterdir()) == sorted(files + ["order"])
    assert fallback.modinfo((hypr / "02-virtio_mmio.ko").read_bytes())["name"] == ["virtio_mmio"]
    assert not (hypr / "01-virtio.ko").read_bytes().endswith(fallback.SIGNATURE_MAGIC)


def fake_bzimage(elf: bytes) -> bytes:
    setup_sects = 3
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    payload = lzma.compress(elf, format=lzma.FORMAT_XZ) + struct.pack("<I", len(elf))
    head = b"\0" * 100   # the decompressor's code comes first in the protected-mode part
    struct.pack_into("<II", setup, 0x248, len(head), len(payload))
    return bytes(setup) + head + payload


def test_vmlinux_comes_out_of_the_bzimage():
    elf = b"\x7fELF" + bytes(range(256)) * 50
    assert fallback.extract_vmlinux(fake_bzimage(elf)) == elf
    with pytest.raises(ValueError):
        fallback.extract_vmlinux(b"\0" * 4096)


def make_cache(tmp_path: Path, hypr: bool, debian: bool) -> Path:
    cache = tmp_path / "cache"
    (cache / "guest").mkdir(parents=True)
    (cache / "guest" / "initramfs.cpio").write_bytes(b"K" * 512)
    if hypr:
        (cache / "kernel" / "6.1-x").mkdir(parents=True)
        (cache / "kernel" / "6.1-x" / "vmlinux").write_bytes(b"\x7fELF")
    if debian:
        kdir = make_kernel_dir(cache / "debian-kernel", {
            **MODULES,
            **{n: (f"kernel/extra/{n}.ko", {"depends": ""}) for n in fallback.NEEDED if n not in MODULES},
        })
        (kdir / "boot").mkdir()
        (kdir / "boot" / f"vmlinuz-{RELEASE}").write_bytes(fake_bzimage(b"\x7fELF debian"))
        (kdir / "package-version").write_text("6.1.999-1\n")
        (kdir / ".complete").touch()
    return cache


@pytest.fixture
def cache_env(monkeypatch, tmp_path):
    for var in ("HYPR_KERNEL", "HYPR_INITRAMFS", "HYPR_KERNEL_KIND"):
        monkeypatch.delenv(var, raising=False)

    def use(hypr: bool, debian: bool) -> Path:
        cache = make_cache(tmp_path, hypr, debian)
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent))
        cache.rename(cache.parent / "hypr")
        return cache.parent / "hypr"
    return use


def test_hypr_kernel_wins_when_built(cache_env):
    cache_env(hypr=True, debian=True)
    art = probe.find_guest_artifacts()
    assert (art.kernel_kind, art.acpi) == ("hypr", False)
    assert "HYPR kernel is built" in art.kernel_reason


def test_debian_kernel_is_the_fallback(cache_env):
    cache = cache_env(hypr=False, debian=True)
    art = probe.find_guest_artifacts()
    assert art.kernel_kind == "debian" and art.acpi
    assert "no HYPR kernel" in art.kernel_reason and RELEASE in art.kernel_reason
    assert art.kernel == cache / "debian-kernel" / RELEASE / "vmlinux"
    assert art.kernel.read_bytes() == b"\x7fELF debian"
    assert art.initramfs.parent == cache / "guest" / "fallback"
    assert art.initramfs.read_bytes().startswith(b"K" * 512)
    # cached: the same file next time; a new kestrel gives a new one
    assert probe.find_guest_artifacts().initramfs == art.initramfs
    (cache / "guest" / "initramfs.cpio").write_bytes(b"L" * 512)
    again = probe.find_guest_artifacts().initramfs
    assert again != art.initramfs and not art.initramfs.exists()
    assert art.launch_options() == {"acpi": True, "extra_cmdline": ["tsc=reliable"]}


def test_kernel_kind_can_be_forced(cache_env, monkeypatch):
    cache_env(hypr=True, debian=False)
    monkeypatch.setenv("HYPR_KERNEL_KIND", "debian")
    with pytest.raises(Unavailable, match="HYPR_KERNEL_KIND=debian but no Debian kernel"):
        probe.find_guest_artifacts()
    monkeypatch.setenv("HYPR_KERNEL_KIND", "hypr")
    assert "forced by HYPR_KERNEL_KIND=hypr" in probe.find_guest_artifacts().kernel_reason
    monkeypatch.setenv("HYPR_KERNEL_KIND", "cloud")
    with pytest.raises(Unavailable, match="expected one of hypr, debian"):
        probe.find_guest_artifacts()


def test_debian_can_be_forced_over_a_built_hypr_kernel(cache_env, monkeypatch):
    cache_env(hypr=True, debian=True)
    monkeypatch.setenv("HYPR_KERNEL_KIND", "debian")
    art = probe.find_guest_artifacts()
    assert art.kernel_kind == "debian" and "forced by HYPR_KERNEL_KIND=debian" in art.kernel_reason


def test_no_kernel_at_all_names_both_set_up_steps(cache_env, monkeypatch):
    cache_env(hypr=False, debian=False)
    with pytest.raises(Unavailable, match="build.sh.*fallback.sh"):
        probe.find_guest_artifacts()
    monkeypatch.setenv("HYPR_KERNEL_KIND", "hypr")
    with pytest.raises(Unavailable, match="HYPR_KERNEL_KIND=hypr but no HYPR kernel"):
        probe.find_guest_artifacts()


def test_qemu_argv_follows_the_kernel(tmp_path):
    launch = VmLaunch(qemu="qemu", accel="tcg", kernel=tmp_path / "k", initrd=tmp_path / "i",
                      rootfs=tmp_path / "r", upper=None, console_log=tmp_path / "c",
                      workload_log=tmp_path / "l", agent_socket=tmp_path / "a")
    assert "microvm,acpi=off,x-option-roms=off" in build_argv(launch)
    launch.acpi, launch.extra_cmdline = True, ["tsc=reliable"]
    assert "microvm,acpi=on,x-option-roms=off" in build_argv(launch)
    assert kernel_cmdline(launch).endswith(" tsc=reliable")


# ---- kestrel's side: modparam.c through ctypes ----

@pytest.fixture(scope="module")
def modparam(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    lib = tmp_path_factory.mktemp("modparam") / "modparam.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(ROOT / "guest_agent" / "modparam.c")],
                   check=True)
    so = ctypes.CDLL(str(lib))
    so.modparam_from_cmdline.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                         ctypes.c_char_p, ctypes.c_size_t]

    def params(cmdline: str, module: str, size: int = 4096) -> tuple[int, str]:
        out = ctypes.create_string_buffer(size)
        raw = cmdline.encode()
        n = so.modparam_from_cmdline(raw, len(raw), module.encode(), out, size)
        return n, out.value.decode()
    return params


def test_qemu_virtio_mmio_devices_reach_the_module(modparam):
    """With acpi=off QEMU describes its devices as virtio_mmio.device= tokens; as a
    module, virtio_mmio gets them only because kestrel passes them on."""
    cmdline = ("console=ttyS0 reboot=t virtio_mmio.device=512@0xfeb00e00:12 rdinit=/init "
               "virtio-mmio.device=512@0xfeb00c00:11 virtio.x=1")
    want = "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11"
    assert modparam(cmdline, "virtio_mmio") == (len(want), want)
    assert modparam(cmdline, "virtio-mmio") == (len(want), want)
    assert modparam(cmdline, "virtio") == (3, "x=1")
    assert modparam(cmdline, "console") == (0, "")


def test_quotes_flags_and_the_end_of_kernel_arguments(modparam):
    assert modparam('"9p.cache=a b" 9p.debug ext4.=1 -- 9p.late=1', "9p") == (17, 'cache="a b" debug')
    assert modparam("a.long=123456 a.b=1", "a", size=8) == (-1, "b=1")
