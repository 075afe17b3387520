"""Build HYPR's real test images, cached under ~/.cache/hypr/images/.

* `debian-nginx.tar`: `hypr-test/debian-nginx:latest`, a three-layer docker-archive built
  from the Debian mirror of the host's release:
    1. a minimal Debian root (`mmdebstrap --variant=minbase`, docs/man/locales excluded);
    2. `nginx-light` (`nginx` where there is no nginx-light), `procps`, `wget` (an HTTP
       client for requests from inside the VM), `passwd`, and `appuser` (uid 1001) in
       `appgroup` (1001) and `staff`;
    3. a tiny change: `/etc/motd` (a file) and `/etc/update-motd.d` (a directory) of
       layer 1 deleted (whiteouts), Debian's default site replaced by one serving
       `/usr/share/nginx/html/index.html`, whose content is INDEX_HTML.
  Config as Docker's nginx image: Cmd `nginx -g 'daemon off;'`, port 80, StopSignal SIGQUIT.
* `noshell.tar`: `hypr-test/noshell:latest`, no shell at all: one static musl binary,
  `/app/hello` (the entrypoint; see HELLO_C), and `/etc/passwd` with `runner` (uid 2000).

Each layer is the diff between two root trees, each tree a tarball, never unpacked
(so the whole build works unprivileged too, and owners, modes, device numbers and
xattrs come through untouched): `TarTree` indexes a tarball (path -> metadata and the
SHA-256 of the content), `diff` lists what was added or changed (in the tarball's own
order, so hard-link targets come before their links) and what was deleted (one
whiteout per deleted subtree). The trees come from two mmdebstrap runs, the second one
starting from the first one's tree (`tar-in` of layer 1, mmdebstrap's documented way to
build on an existing chroot) and installing the layer-2 packages with apt in a
customize hook; layer 3's tree is layer 2's tree with entries removed and added in
Python. Why not one mmdebstrap run with snapshots taken by hooks: a snapshot taken
mid-run still holds apt's lists, logs and mmdebstrap's own temporary files, so the
snapshot would have to replay mmdebstrap's clean-up; two runs both end cleaned by
mmdebstrap itself, and the second costs 20-30 s (no essential packages again).

Rebuilt only when the output is missing or this script (its hash is in the stamp) or
the host's release changed. Downloaded .debs and apt's lists are kept between builds
in `images/apt-<codename>/`.

    .venv/bin/python scripts/build_test_images.py [--force] [--only NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypr_engine.oci import writer as w

EPOCH = 1_700_000_000  # SOURCE_DATE_EPOCH: mtime of everything the build creates itself
CREATED = datetime.datetime.fromtimestamp(EPOCH, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NGINX_REF = "hypr-test/debian-nginx:latest"
NOSHELL_REF = "hypr-test/noshell:latest"
INDEX_HTML = "<!DOCTYPE html>\n<title>hypr</title>\n<h1>served by nginx in a HYPR microVM</h1>\n"
DPKG_EXCLUDES = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"]
# Entries of these directories never belong in an image (the guest mounts its own).
IGNORED_CHILDREN = ("dev/", "proc/", "sys/")

# Layer 2, run by sh -e inside the chroot of the second mmdebstrap run.
LAYER2_SH = """\
export DEBIAN_FRONTEND=noninteractive
nginx=nginx-light
apt-cache show --no-all-versions nginx-light >/dev/null 2>&1 || nginx=nginx
apt-get install --yes --no-install-recommends "$nginx" procps wget passwd
groupadd --gid 1001 appgroup
useradd --no-log-init --create-home --uid 1001 --gid appgroup --groups staff --shell /bin/bash appuser
"""

# Layer 3: Docker's nginx image serves /usr/share/nginx/html on port 80 and logs to the
# container's stdout/stderr; this does the same (Debian's default site goes).
NGINX_SITE = """\
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    root /usr/share/nginx/html;
    index index.html;
    location / {
        try_files $uri $uri/ =404;
    }
}
"""
# Layer 3 deletes these (a file and a directory of layer 1) and every site Debian enabled.
LAYER3_REMOVE = ["etc/motd", "etc/update-motd.d"]

HELLO_C = r"""
/* hello: the one program of the noshell test image.
 *   hello [CODE [ARGS...]]  prints its argv, ids, cwd and environment; exits CODE (default 0)
 *   hello sleep [SECONDS]   prints "sleeping" and sleeps (for ever without SECONDS)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	char cwd[4096];
	if (argc > 1 && strcmp(argv[1], "sleep") == 0) {
		printf("sleeping\n");
		fflush(stdout);
		if (argc > 2)
			sleep((unsigned)atoi(argv[2]));
		else
			for (;;)
				pause();
		return 0;
	}
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	printf("uid=%d gid=%d euid=%d\n", (int)getuid(), (int)getgid(), (int)geteuid());
	printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
	for (char **e = environ; *e; e++)
		printf("env:%s\n", *e);
	return argc > 1 ? atoi(argv[1]) : 0;
}
"""


def log(msg: str) -> None:
    print(f"build_test_images: {msg}", flush=True)


class BuildError(Exception):
    pass


# ----------------------------------------------------------------------------- trees and diffs


@dataclass
class Node:
    """One path of a root tree: a tar header (name normalized) and where its data lives."""

    info: tarfile.TarInfo  # for a hard link: LNKTYPE, linkname = normalized target path
    sig: tuple  # what "unchanged" compares: type, mode, owner, mtime, content, xattrs
    data: Callable[[], BinaryIO] | None = None  # regular files only


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _xattrs(info: tarfile.TarInfo) -> dict[str, str]:
    return {k: v for k, v in info.pax_headers.items() if k.startswith(("SCHILY.xattr.", "LIBARCHIVE.xattr."))}


def _clean_info(src: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    """A fresh header: numeric owners, whole-second mtime, and no pax field except xattrs.

    (A copied pax `path` or `size` would override the name and size set here.)
    """
    info = tarfile.TarInfo(name)
    info.type, info.mode = src.type, src.mode & 0o7777
    info.uid, info.gid, info.uname, info.gname = src.uid, src.gid, "", ""
    info.mtime = int(src.mtime)
    info.size = src.size if src.isreg() else 0
    info.linkname = src.linkname
    info.devmajor, info.devminor = src.devmajor, src.devminor
    info.pax_headers = _xattrs(src)
    return info


class TarTree:
    """A root filesystem held as a tarball, indexed by normalized path, in tarball order."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes

    @classmethod
    def from_tar(cls, path: Path) -> TarTree:
        nodes: dict[str, Node] = {}
        tf = tarfile.open(path, "r:")  # noqa: SIM115 (kept open: Node.data reads from it later)
        for m in tf:
            name = _norm(m.name)
            if not name or any(name.startswith(p) for p in IGNORED_CHILDREN):
                continue
            info = _clean_info(m, name)
            if m.islnk():
                target = nodes.get(_norm(m.linkname))
                if target is None or not target.info.isreg():
                    raise BuildError(f"{path}: hard link {name} -> {m.linkname}: no such regular file before it")
                info.linkname = target.info.name
                nodes[name] = Node(info, target.sig, target.data)
                continue
            if m.isreg():
                h = hashlib.sha256()
                f = tf.extractfile(m)
                assert f is not None
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                content: object = h.hexdigest()
                data = lambda tf=tf, m=m: tf.extractfile(m)
            elif m.issym():
                content, data = m.linkname, None
            elif m.ischr() or m.isblk():
                content, data = (m.devmajor, m.devminor), None
            elif m.isdir() or m.isfifo():
                content, data = None, None
            else:
                raise BuildError(f"{path}: {name} has unsupported tar type {m.type!r}")
            kind = tarfile.REGTYPE if m.isreg() else m.type
            sig = (kind, info.mode, info.uid, info.gid, info.mtime, content, tuple(sorted(info.pax_headers.items())))
            nodes[name] = Node(info, sig, data)
        return cls(nodes)

    def derive(self, remove: Iterable[str] = (), add: Iterable[w.TarEntry] = ()) -> TarTree:
        """A new tree: this one without `remove` (whole subtrees) and with `add` (replacing)."""
        gone = [p.strip("/") for p in remove]
        for p in gone:
            if p not in self.nodes:
                raise BuildError(f"cannot remove {p}: not in the tree")
        nodes = {n: node for n, node in self.nodes.items()
                 if not any(n == p or n.startswith(p + "/") for p in gone)}
        for entry in add:
            info = entry.tarinfo()
            name = _norm(info.name)
            info.name = name
            sig = (info.type, info.mode, info.uid, info.gid, int(info.mtime),
                   hashlib.sha256(entry.data).hexdigest() if info.isreg() else info.linkname, ())
            data = (lambda d=entry.data: io.BytesIO(d)) if info.isreg() else None
            nodes.pop(name, None)
            nodes[name] = Node(info, sig, data)
        return TarTree(nodes)

    def text(self, name: str) -> str:
        node = self.nodes[name]
        assert node.data is not None
        with node.data() as f:
            return f.read().decode()


@dataclass
class Diff:
    changed: list[str]  # added or changed paths, in the new tree's order
    deleted: list[str]  # topmost deleted paths (and directories replaced by something else)


def diff(old: TarTree | None, new: TarTree) -> Diff:
    """What turns `old` into `new`: added/changed paths, and the deleted ones (one per subtree)."""
    before = old.nodes if old else {}
    changed = [n for n, node in new.nodes.items() if n not in before or before[n].sig != node.sig]
    deleted = []
    for name, node in before.items():
        replaced_dir = node.info.isdir() and name in new.nodes and not new.nodes[name].info.isdir()
        if name in new.nodes and not replaced_dir:
            continue
        if not any(name.startswith(d + "/") for d in deleted):  # else its ancestor's whiteout covers it
            deleted.append(name)
    return Diff(changed, deleted)


def write_layer(new: TarTree, d: Diff, dest: Path) -> tuple[int, int]:
    """Write the diff as a layer tar: whiteouts first, then the entries. Returns (entries, bytes)."""
    with open(dest, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in d.deleted:
            tf.addfile(w.whiteout(name, mtime=EPOCH).tarinfo())
        written: set[str] = set()
        for name in d.changed:
            node = new.nodes[name]
            info = copy.copy(node.info)
            info.pax_headers = dict(node.info.pax_headers)
            if info.islnk() and info.linkname not in written:
                # Its target is not in this layer (unchanged, below): a self-contained copy.
                assert node.data is not None
                with node.data() as f:
                    payload = f.read()
                info.type, info.size, info.linkname = tarfile.REGTYPE, len(payload), ""
                tf.addfile(info, io.BytesIO(payload))
            elif info.isreg():
                assert node.data is not None
                with node.data() as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
            written.add(name)
    return len(d.deleted) + len(d.changed), dest.stat().st_size


# ----------------------------------------------------------------------------- mmdebstrap


def host_release() -> tuple[str, str]:
    """(ID, VERSION_CODENAME) of the host, from /etc/os-release."""
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value.strip().strip('"')
    codename = fields.get("VERSION_CODENAME") or ""
    if fields.get("ID") != "debian" or not codename:
        raise BuildError(f"the host is not Debian with a VERSION_CODENAME (/etc/os-release: {fields.get('PRETTY_NAME')})")
    return "debian", codename


def _mm_env() -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
        "SOURCE_DATE_EPOCH": str(EPOCH),
    }
    for key, value in os.environ.items():
        if key.lower() in ("http_proxy", "https_proxy", "no_proxy", "tmpdir"):
            env[key] = value
    return env


def mmdebstrap(args: list[str], codename: str, out: Path, apt_cache: Path, logfile: Path, timeout: float) -> float:
    """One mmdebstrap run writing a tarball; .debs and lists are kept in `apt_cache`."""
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap is not installed (scripts/setup.sh installs it)")
    for p in (apt_cache, out):
        if any(c.isspace() for c in str(p)):
            raise BuildError(f"{p}: mmdebstrap's special hooks cannot take paths with spaces")
    debs, lists = apt_cache / "archives", apt_cache / "lists"
    debs.mkdir(parents=True, exist_ok=True)
    lists.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mmdebstrap",
        f"--mode={'root' if os.geteuid() == 0 else 'unshare'}",
        "--format=tar",
        "--skip=download/empty", "--skip=essential/unlink",  # keep the .debs to sync them out
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        "--dpkgopt=force-unsafe-io",  # as Docker's Debian images; no fsync per file
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives "$1"/var/lib/apt/lists',
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        f"--setup-hook=sync-in {lists} /var/lib/apt/lists/",
        # sync-in copies the cache directories' owner too (the user's own, in unshare mode)
        '--setup-hook=chown -R 0:0 "$1"/var/cache/apt/archives "$1"/var/lib/apt/lists',
        *args,
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        f"--customize-hook=sync-out /var/lib/apt/lists {lists}",
        # mmdebstrap copies the host's; the image must not carry them (the guest gets its own).
        '--customize-hook=rm -f "$1"/etc/resolv.conf "$1"/etc/hostname',
        codename,
        str(out),
    ]
    if mirror := os.environ.get("HYPR_DEBIAN_MIRROR"):
        cmd.append(mirror)
    t0 = time.monotonic()
    with open(logfile, "ab") as lf:
        lf.write(("\n$ " + " ".join(cmd) + "\n").encode())
        lf.flush()
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                  env=_mm_env(), timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise BuildError(f"mmdebstrap ran past {timeout:.0f} s; its output is in {logfile}") from None
    if proc.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(f"mmdebstrap failed ({proc.returncode}); log {logfile}:\n  " + "\n  ".join(tail))
    return time.monotonic() - t0


def prune_debs(apt_cache: Path, status: str) -> None:
    """Delete cached .debs that are not part of the image just built."""
    keep = set()
    for para in status.split("\n\n"):
        f = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in f and "Version" in f:
            keep.add(f"{f['Package']}_{f['Version'].replace(':', '%3a')}_{f.get('Architecture', 'all')}.deb")
    for deb in (apt_cache / "archives").glob("*.deb"):
        if deb.name not in keep:
            deb.unlink()


def _history(created_by: str, comment: str = "") -> dict:
    h = {"created": CREATED, "created_by": created_by}
    if comment:
        h["comment"] = comment
    return h


def build_debian_nginx(out: Path, work: Path, apt_cache: Path, codename: str) -> dict:
    logfile = work / "mmdebstrap.log"
    t0 = time.monotonic()
    stats: dict = {}

    # Tree A: the minimal root.
    base_raw = work / "base-raw.tar"
    hook_dir = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")  # else apt pulls usrmerge and perl
    hooks = [f"--hook-dir={hook_dir}"] if hook_dir.is_dir() else []
    stats["mmdebstrap_base_s"] = mmdebstrap(["--variant=minbase", *hooks], codename, base_raw, apt_cache, logfile, 900)
    log(f"minimal Debian {codename} root: {stats['mmdebstrap_base_s']:.0f} s")
    tree_a = TarTree.from_tar(base_raw)
    layer1 = work / "layer1.tar"
    write_layer(tree_a, diff(None, tree_a), layer1)

    # Tree B: tree A plus packages and users, from a run that starts from layer 1.
    script = work / "layer2.sh"
    script.write_text(LAYER2_SH)
    full_raw = work / "full-raw.tar"
    stats["mmdebstrap_packages_s"] = mmdebstrap(
        ["--variant=custom", f"--setup-hook=tar-in {layer1} /",
         f"--customize-hook=upload {script} /tmp/layer2.sh",
         '--customize-hook=chroot "$1" sh -e /tmp/layer2.sh'],
        codename, full_raw, apt_cache, logfile, 900)
    log(f"nginx, procps, wget, users: {stats['mmdebstrap_packages_s']:.0f} s")
    tree_b = TarTree.from_tar(full_raw)
    d2 = diff(tree_a, tree_b)
    layer2 = work / "layer2.tar"
    write_layer(tree_b, d2, layer2)
    if d2.deleted:
        log(f"layer 2 deletes {len(d2.deleted)} paths: {', '.join(d2.deleted[:8])}")

    # Tree C: the tiny last change.
    t = {"mtime": EPOCH}
    sites = [n for n in tree_b.nodes if n.startswith("etc/nginx/sites-enabled/")]
    tree_c = tree_b.derive(
        remove=LAYER3_REMOVE + sites,
        add=[
            w.file("usr/share/nginx/html/index.html", INDEX_HTML, **t),
            w.file("etc/nginx/conf.d/default.conf", NGINX_SITE, **t),
            w.symlink("var/log/nginx/access.log", "/dev/stdout", **t),
            w.symlink("var/log/nginx/error.log", "/dev/stderr", **t),
        ],
    )
    d3 = diff(tree_b, tree_c)
    layer3 = work / "layer3.tar"
    write_layer(tree_c, d3, layer3)

    packages = [line.split(": ", 1)[1] for line in tree_b.text("var/lib/dpkg/status").splitlines()
                if line.startswith("Package: ")]
    nginx_pkg = "nginx-light" if "nginx-light" in packages else "nginx"
    config = {
        "created": CREATED,
        "config": {
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": [f"PATH={DEFAULT_PATH}"],
            "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT",
            "WorkingDir": "/",
            "Labels": {"org.hypr.test-image": "debian-nginx", "org.hypr.debian-release": codename},
        },
        "history": [
            _history(f"mmdebstrap --variant=minbase {codename}"),
            _history(f"apt-get install {nginx_pkg} procps wget passwd; useradd appuser (1001, groups appgroup staff)"),
            _history(f"rm {' '.join('/' + p for p in LAYER3_REMOVE + sites)}; "
                     "add /usr/share/nginx/html/index.html, /etc/nginx/conf.d/default.conf; logs to stdout/stderr"),
        ],
    }
    w.write_docker_archive(out, [layer1, layer2, layer3], config, repo_tags=[NGINX_REF])
    prune_debs(apt_cache, tree_b.text("var/lib/dpkg/status"))
    stats.update(
        seconds=round(time.monotonic() - t0, 1),
        layers=[p.stat().st_size for p in (layer1, layer2, layer3)],
        layer_entries=[len(tree_a.nodes), len(d2.changed) + len(d2.deleted), len(d3.changed) + len(d3.deleted)],
        layer3_whiteouts=d3.deleted,
        packages=len(packages),
    )
    return stats


# ----------------------------------------------------------------------------- noshell


def build_noshell(out: Path, work: Path) -> dict:
    t0 = time.monotonic()
    if shutil.which("musl-gcc") is None:
        raise BuildError("musl-gcc is not installed (package musl-tools; scripts/setup.sh installs it)")
    src, binary = work / "hello.c", work / "hello"
    src.write_text(HELLO_C)
    cc = subprocess.run(["musl-gcc", "-static", "-Os", "-s", "-Wall", "-Werror", "-o", str(binary), str(src)],
                        capture_output=True, timeout=120, check=False)
    if cc.returncode != 0:
        raise BuildError(f"musl-gcc failed: {cc.stderr.decode(errors='replace')}")
    t = {"mtime": EPOCH}
    entries = [
        w.directory("app", **t),
        w.file("app/hello", binary.read_bytes(), mode=0o755, **t),
        w.directory("etc", **t),
        w.file("etc/passwd", "root:x:0:0:root:/root:/app/hello\nrunner:x:2000:2000:runner:/home/runner:/app/hello\n", **t),
        w.file("etc/group", "root:x:0:\nrunner:x:2000:\n", **t),
        w.directory("home", **t),
        w.directory("home/runner", uid=2000, gid=2000, **t),
        w.directory("root", mode=0o700, **t),
        w.directory("tmp", mode=0o1777, **t),
    ]
    config = {
        "created": CREATED,
        "config": {
            "Entrypoint": ["/app/hello"],
            "Cmd": ["0"],
            "Env": ["PATH=/app"],
            "WorkingDir": "/",
            "Labels": {"org.hypr.test-image": "noshell"},
        },
        "history": [_history("static musl binary /app/hello; /etc/passwd with runner (2000)")],
    }
    w.write_docker_archive(out, [w.layer_tar(entries)], config, repo_tags=[NOSHELL_REF])
    return {"seconds": round(time.monotonic() - t0, 1), "binary": binary.stat().st_size}


# ----------------------------------------------------------------------------- main

IMAGES = {"debian-nginx": "debian-nginx.tar", "noshell": "noshell.tar"}


def stamp_key(codename: str) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(f"\0{codename}\0{os.environ.get('HYPR_DEBIAN_MIRROR', '')}".encode())
    return h.hexdigest()


def _stamped_key(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hypr" / "images"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=cache, help=f"output directory (default {cache})")
    ap.add_argument("--only", choices=sorted(IMAGES), action="append", help="build only this image (repeatable)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    ap.add_argument("--release", help="Debian codename to build from (default: the host's)")
    args = ap.parse_args(argv)
    out_dir: Path = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        codename = args.release or host_release()[1]
        key = stamp_key(codename)
        with open(out_dir / ".build_test_images.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two set-ups at once build once
            for stale in out_dir.glob(".work-*"):  # a failed build's leftovers
                shutil.rmtree(stale, ignore_errors=True)
            for name in args.only or sorted(IMAGES):
                out = out_dir / IMAGES[name]
                stamp = out.with_name(out.name + ".stamp")
                if not args.force and out.is_file() and _stamped_key(stamp) == key:
                    log(f"{out} is up to date")
                    continue
                log(f"building {out}")
                stamp.unlink(missing_ok=True)
                work = Path(tempfile.mkdtemp(prefix=f".work-{name}-", dir=out_dir))
                try:
                    if name == "debian-nginx":
                        stats = build_debian_nginx(out, work, out_dir / f"apt-{codename}", codename)
                    else:
                        stats = build_noshell(out, work)
                except BaseException:
                    for p in work.glob("*.tar"):
                        p.unlink()
                    log(f"build of {name} failed; what is left of it is in {work}")
                    raise
                shutil.rmtree(work)
                stats.update(key=key, release=codename, size=out.stat().st_size)
                stamp.write_text(json.dumps(stats, indent=1) + "\n")
                log(f"{out}: {stats['size'] / 1e6:.1f} MB in {stats['seconds']} s")
    except BuildError as exc:
        print(f"build_test_images: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
