"""The per-VM boot configuration cpio, checked with the system's cpio tool."""

from __future__ import annotations

import subprocess

from hypr_engine.agent.codec import Fields
from hypr_engine.vmm.bootcfg import BootConfig, BootTag, config_cpio, write_initrd


def test_config_cpio_is_a_valid_newc_archive(tmp_path):
    cfg = BootConfig(vm_id="ab" * 32, argv=["sh", "-c", "echo hi"], env=["A=1", "B=" + "x" * 5000],
                     hostname="h1", user="app", workdir="/tmp")
    archive = config_cpio(cfg)
    assert len(archive) % 512 == 0
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["hypr", "hypr/config"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=out, check=True)
    fields = Fields((out / "hypr/config").read_bytes())
    assert [a.decode() for a in fields.all(BootTag.ARGV)] == ["sh", "-c", "echo hi"]
    # the environment is far beyond the kernel command line's 2 KiB and arrives whole
    assert fields.all(BootTag.ENV)[1] == b"B=" + b"x" * 5000
    assert fields.str(BootTag.USER) == "app"


def test_initrd_is_base_followed_by_config(tmp_path):
    base = tmp_path / "base.cpio"
    base.write_bytes(b"BASE" * 128)
    out = tmp_path / "initrd"
    cfg = BootConfig(vm_id="x", argv=["true"], env=[], hostname="h")
    write_initrd(base, cfg, out)
    data = out.read_bytes()
    assert data.startswith(b"BASE" * 128)
    assert data[512:] == config_cpio(cfg)
