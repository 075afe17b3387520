"""A tiny, deterministic busybox image built from the host's static busybox binary.

HYPR's tests and first-run experience need a real image without network access.
Debian's `busybox-static` is one self-contained binary; this wraps it as a one-layer
docker-archive: `/bin/busybox`, one symlink per applet in `/bin`, minimal
`/etc/passwd` and `/etc/group` (root, nobody, and `app` uid 1000 in groups `app`
1000 and `staff` 50), `/tmp` 1777, `/root`, `/home/app` owned by 1000. Every mtime and
the config's `created` are fixed, so the image ID only changes when the binary does.

    python -m hypr_engine.oci.busybox_image OUT.tar [--busybox PATH] [--ref NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hypr_engine.errors import HyprError, InvalidArgument
from hypr_engine.oci import writer as w
from hypr_engine.oci.writer import WrittenImage

EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z: fixed mtime of every entry
CREATED = "2023-11-14T22:13:20Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""
GROUP = """\
root:x:0:
staff:x:50:app
nobody:x:65534:
app:x:1000:
"""


def applets(busybox: Path) -> list[str]:
    """Applet names from `busybox --list` (the binary must run on this host)."""
    try:
        out = subprocess.run([str(busybox), "--list"], capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise InvalidArgument(f"cannot run {busybox} --list: {exc}") from None
    names = sorted({n for n in out.decode().split() if n and "/" not in n and n != "busybox"})
    if not names:
        raise InvalidArgument(f"{busybox} --list printed no applets")
    return names


def busybox_entries(busybox: Path) -> list[w.TarEntry]:
    """The image's single layer, entry by entry."""
    t = {"mtime": EPOCH}
    entries = [
        w.directory("bin", **t),
        w.file("bin/busybox", busybox.read_bytes(), mode=0o755, **t),
        *(w.symlink(f"bin/{name}", "busybox", **t) for name in applets(busybox)),
        w.directory("dev", **t),
        w.directory("etc", **t),
        w.file("etc/passwd", PASSWD, **t),
        w.file("etc/group", GROUP, **t),
        w.directory("home", **t),
        w.directory("home/app", mode=0o755, uid=1000, gid=1000, **t),
        w.directory("proc", **t),
        w.directory("root", mode=0o700, **t),
        w.directory("run", **t),
        w.directory("sys", **t),
        w.directory("tmp", mode=0o1777, **t),
        w.directory("usr", **t),
        w.directory("var", **t),
    ]
    return entries


def busybox_config() -> dict:
    return {
        "created": CREATED,
        "config": {"Cmd": ["sh"], "Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"},
        "history": [{"created": CREATED, "created_by": "hypr busybox_image", "comment": "busybox-static"}],
    }


def build_busybox_image(
    out_path: Path, busybox: Path | str = "/bin/busybox", ref: str = "hypr/busybox:latest"
) -> WrittenImage:
    """Write the image as a docker-archive at `out_path`; returns its digests (config digest = image ID)."""
    busybox = Path(busybox)
    if not busybox.is_file():
        raise InvalidArgument(f"{busybox}: no such file (install busybox-static)")
    layer = w.layer_tar(busybox_entries(busybox))
    return w.write_docker_archive(Path(out_path), [layer], busybox_config(), [ref])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a small busybox image as a docker-archive.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--busybox", default="/bin/busybox")
    parser.add_argument("--ref", default="hypr/busybox:latest")
    args = parser.parse_args(argv)
    try:
        written = build_busybox_image(args.out, args.busybox, args.ref)
    except HyprError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 125
    print(written.config_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
