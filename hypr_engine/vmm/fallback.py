"""The fallback guest kernel: Debian's generic kernel, its modules in the initramfs.

`kernel_build/fallback.sh` unpacks Debian's `linux-image-amd64` (never installed)
into `~/.cache/hypr/debian-kernel/<release>/`. Everything a HYPR guest needs is a
module there, so this module packs those modules into a second newc cpio appended
to kestrel's initramfs (the kernel unpacks concatenated archives):

    lib/modules/hypr/NN-name.ko     the modules, NN their load order
    lib/modules/hypr/order          their file names, one a line

kestrel loads them in that order with finit_module(2), passing each its
`name.param=value` tokens from the command line as modprobe would
(guest_agent/modparam.c). The set and the order come from the dependencies the
modules declare: `modules.dep` when there is one (an installed kernel), else the
`depends=` and `softdep=` lines of each module's `.modinfo` section (the package
ships no modules.dep: depmod writes it on installation). The result is cached by
kernel release, package version and a hash of kestrel's initramfs.

The vmlinuz is a compressed bzImage; it is unpacked once into the ELF `vmlinux` it
holds, which QEMU boots through the PVH entry like the HYPR kernel (the
decompressor would run under TCG on every boot).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from hypr_engine.errors import Unavailable
from hypr_engine.vmm.bootcfg import _cpio_entry

MODULES_DIR = "lib/modules/hypr"

# What the guest needs, in the order it needs it; dependencies come first
# automatically. crc32c_generic: ext4 and jbd2 checksum with the crypto API's
# crc32c, named only as a soft dependency (an alias, which nothing here
# resolves), and the TCG CPU (qemu64) has no SSE 4.2 for crc32c-intel.
NEEDED = (
    "crc32c_generic",
    "virtio_mmio", "virtio_console", "virtio_blk", "virtio_rng",
    "squashfs", "overlay", "ext4",
    "9pnet_virtio", "9p",
    "virtio_net",
)
# Soft dependencies name aliases; the ones NEEDED's modules use.
ALIASES = {"crypto-crc32c": "crc32c_generic", "crc32c": "crc32c_generic"}
# Bump when the archive's layout changes, so cached initramfs files are rebuilt.
FORMAT = 2
SIGNATURE_MAGIC = b"~Module signature appended~\n"


def module_name(path: str) -> str:
    """`kernel/drivers/char/hw_random/virtio-rng.ko.xz` -> `virtio_rng`."""
    base = path.rsplit("/", 1)[-1]
    for suffix in (".xz", ".gz", ".zst"):
        base = base.removesuffix(suffix)
    return base.removesuffix(".ko").replace("-", "_")


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The `.modinfo` section of an ELF64 little-endian module: key -> values."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    strtab = section(shstrndx)[1]
    for i in range(shnum):
        name, offset, size = section(i)
        end = data.index(b"\0", strtab + name)
        if data[strtab + name:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in data[offset:offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ValueError("no .modinfo section")


def strip_signature(data: bytes) -> bytes:
    """The module without its appended signature.

    The kernel checks signatures it finds (MODULE_SIG, not enforced): under TCG
    that was 0.8 s of the 1.5 s the 21 modules took to load. An unsigned module
    loads with the taint flag E. The modules come from the package apt verified;
    the guest gains nothing from checking them again.
    """
    if not data.endswith(SIGNATURE_MAGIC):
        return data
    # struct module_signature (12 bytes, its last field the big-endian length)
    # sits between the signature and the magic.
    end = len(data) - len(SIGNATURE_MAGIC)
    sig_len = int.from_bytes(data[end - 4:end], "big")
    if sig_len + 12 > end:
        raise ValueError("truncated module signature")
    return data[:end - 12 - sig_len]


def _pre_softdeps(info: dict[str, list[str]]) -> list[str]:
    """`softdep=pre: a b post: c` -> [a, b]."""
    out: list[str] = []
    for line in info.get("softdep", []):
        pre = False
        for word in line.split():
            if word.endswith(":"):
                pre = word == "pre:"
            elif pre:
                out.append(word)
    return out


class ModuleIndex:
    """The modules of one kernel release directory (`lib/modules/<release>`)."""

    def __init__(self, moddir: Path):
        self.moddir = moddir
        self.paths: dict[str, str] = {}
        self.builtin: set[str] = set()
        self._deps: dict[str, list[str]] = {}
        listing = moddir / "modules.dep"
        if listing.is_file():
            for line in listing.read_text().splitlines():
                path, sep, deps = line.partition(":")
                if sep:
                    name = module_name(path)
                    self.paths[name] = path
                    self._deps[name] = [module_name(d) for d in deps.split()]
        elif (moddir / "modules.order").is_file():
            for line in (moddir / "modules.order").read_text().splitlines():
                if line.strip():
                    self.paths[module_name(line.strip())] = line.strip()
        else:
            raise Unavailable(f"{moddir} has neither modules.dep nor modules.order")
        if (moddir / "modules.builtin").is_file():
            self.builtin = {module_name(p) for p in (moddir / "modules.builtin").read_text().split()}
        self._info: dict[str, dict[str, list[str]]] = {}

    def file(self, name: str) -> Path:
        path = self.moddir / self.paths[name]
        if not path.exists():   # modules.order names x.ko where the file is x.ko.xz
            for suffix in (".xz", ".gz", ".zst"):
                if path.with_name(path.name + suffix).exists():
                    return path.with_name(path.name + suffix)
        return path

    def read(self, name: str) -> bytes:
        """The module's ELF image, decompressed."""
        path = self.file(name)
        data = path.read_bytes()
        if path.suffix == ".xz":
            return lzma.decompress(data)
        if path.suffix == ".gz":
            return gzip.decompress(data)
        if path.suffix == ".zst":
            raise Unavailable(f"{path}: zstd-compressed modules are not supported")
        return data

    def info(self, name: str) -> dict[str, list[str]]:
        if name not in self._info:
            try:
                self._info[name] = modinfo(self.read(name))
            except (OSError, ValueError, struct.error, lzma.LZMAError) as exc:
                raise Unavailable(f"cannot read module {self.file(name)}: {exc}") from exc
        return self._info[name]

    def deps(self, name: str) -> list[str]:
        """What must be loaded before name: its soft `pre:` dependencies that
        resolve to a module, then the modules it links against."""
        info = self.info(name)
        pre = [ALIASES.get(d, d) for d in _pre_softdeps(info)]
        pre = [d.replace("-", "_") for d in pre if d.replace("-", "_") in self.paths]
        if name in self._deps:
            hard = self._deps[name]
        else:
            hard = [d.replace("-", "_") for v in info.get("depends", []) for d in v.split(",") if d]
        return pre + hard


def resolve(index: ModuleIndex, needed: tuple[str, ...] | list[str] = NEEDED) -> tuple[list[str], list[str]]:
    """The load order (dependencies first, otherwise the order of `needed`) and the
    needed modules that are built into the kernel (nothing to load)."""
    order: list[str] = []
    builtin: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise Unavailable(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index.paths:
            if name in index.builtin:
                state[name] = "done"
                builtin.append(name)
                return
            raise Unavailable(
                f"module {name} ({' -> '.join(chain + (name,))}) is neither built into "
                f"the kernel nor in {index.moddir}"
            )
        state[name] = "visiting"
        for dep in index.deps(name):
            visit(dep, chain + (name,))
        state[name] = "done"
        order.append(name)

    for name in needed:
        visit(name, ())
    return order, builtin


def modules_cpio(index: ModuleIndex, order: list[str]) -> bytes:
    """A newc archive holding the modules (signatures removed) and the order file."""
    body = b""
    ino = 100
    for directory in ("lib", "lib/modules", MODULES_DIR):
        body += _cpio_entry(directory, b"", 0o040755, ino)
        ino += 1
    files = []
    for n, name in enumerate(order):
        fname = f"{n:02d}-{name}.ko"
        files.append(fname)
        body += _cpio_entry(f"{MODULES_DIR}/{fname}", strip_signature(index.read(name)), 0o100644, ino)
        ino += 1
    body += _cpio_entry(f"{MODULES_DIR}/order", "".join(f + "\n" for f in files).encode(), 0o100644, ino)
    body += _cpio_entry("TRAILER!!!", b"", 0, 0)
    return body + b"\0" * (-len(body) % 512)


@dataclass(frozen=True)
class DebianKernel:
    dir: Path             # ~/.cache/hypr/debian-kernel/<release>
    release: str          # 6.1.0-56-amd64
    package_version: str  # 6.1.192-2

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "boot" / f"vmlinuz-{self.release}"

    @property
    def moddir(self) -> Path:
        return self.dir / "lib" / "modules" / self.release

    @property
    def vmlinux(self) -> Path:
        return self.dir / "vmlinux"


def find_debian_kernel(cache: Path) -> DebianKernel | None:
    """The newest kernel fallback.sh unpacked, if any."""
    found = []
    for marker in (cache / "debian-kernel").glob("*/.complete"):
        d = marker.parent
        version = (d / "package-version").read_text().strip() if (d / "package-version").is_file() else "unknown"
        found.append((marker.stat().st_mtime, DebianKernel(d, d.name, version)))
    return max(found, key=lambda f: f[0])[1] if found else None


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage (boot protocol 2.08+: payload_offset and
    payload_length locate the compressed vmlinux after the setup sectors)."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage")
    version, = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x208:
        raise ValueError(f"boot protocol {version:#x} has no payload fields")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start:start + length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        elf = dec.decompress(payload)
    elif payload.startswith(b"\x1f\x8b"):
        elf = zlib.decompressobj(wbits=31).decompress(payload)   # ignores the appended size
    else:
        raise ValueError(f"unsupported kernel compression (payload starts {payload[:6].hex()})")
    if elf[:4] != b"\x7fELF":
        raise ValueError("the bzImage payload is not an ELF file")
    return elf


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def ensure_vmlinux(kernel: DebianKernel) -> Path:
    """The kernel's ELF image, unpacked from its vmlinuz once."""
    if not kernel.vmlinux.is_file() or kernel.vmlinux.stat().st_mtime < kernel.vmlinuz.stat().st_mtime:
        try:
            elf = extract_vmlinux(kernel.vmlinuz.read_bytes())
        except (OSError, ValueError, lzma.LZMAError) as exc:
            raise Unavailable(f"cannot unpack {kernel.vmlinuz}: {exc}") from exc
        _atomic_write(kernel.vmlinux, elf)
    return kernel.vmlinux


def build_fallback_initramfs(kernel_dir: Path, base_initramfs: Path, out: Path,
                             needed: tuple[str, ...] | list[str] = NEEDED) -> list[str]:
    """Write kestrel's initramfs followed by the modules' archive to out; the
    modules in load order."""
    release = kernel_dir.name
    index = ModuleIndex(kernel_dir / "lib" / "modules" / release)
    order, _builtin = resolve(index, needed)
    _atomic_write(out, base_initramfs.read_bytes() + modules_cpio(index, order))
    return order


def ensure_initramfs(kernel: DebianKernel, base_initramfs: Path, cache: Path) -> Path:
    """The fallback initramfs for this kernel and this kestrel, built once."""
    h = hashlib.sha256(base_initramfs.read_bytes())
    h.update(f"{FORMAT} {kernel.package_version} {' '.join(NEEDED)}".encode())
    outdir = cache / "guest" / "fallback"
    out = outdir / f"initramfs-{kernel.release}-{h.hexdigest()[:12]}.cpio"
    if out.is_file():
        return out
    outdir.mkdir(parents=True, exist_ok=True)
    build_fallback_initramfs(kernel.dir, base_initramfs, out)
    for stale in outdir.glob(f"initramfs-{kernel.release}-*.cpio"):
        if stale != out:   # per-VM initrds are copies, so nothing uses these
            stale.unlink(missing_ok=True)
    return out
