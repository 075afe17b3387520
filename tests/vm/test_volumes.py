"""Volumes, bind mounts and tmpfs against real VMs, driven through the `hypr` CLI.

Each test runs in its own data directory (`hypr_home`), whose teardown fails the
test on any process, socket or mount left behind.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from tests.vm.test_fallback_kernel import debian  # noqa: F401  (a fixture: the fallback kernel)

pytestmark = pytest.mark.vm


def _err(proc) -> str:
    return proc.stderr.decode(errors="replace")


def test_named_volume_outlives_its_vm_after_stop_and_after_rm_f(hypr_home, busybox):
    # stop: kestrel syncs and remounts the volume read-only on the way down
    hypr_home.out("run", "-d", "--name", "w1", "-v", "data:/data", busybox, "sleep", "600")
    hypr_home.out("exec", "w1", "sh", "-c", "echo from-w1 > /data/a")
    hypr_home.out("stop", "-t", "1", "w1")
    hypr_home.out("rm", "w1")
    # rm -f of a running VM: the workload is killed, what it wrote (not synced by it) stays
    hypr_home.out("run", "-d", "--name", "w2", "-v", "data:/data", busybox, "sleep", "600")
    hypr_home.out("exec", "w2", "sh", "-c", "echo from-w2 > /data/b")
    hypr_home.out("rm", "-f", "w2")
    proc = hypr_home.run("run", "--rm", "-v", "data:/data", busybox, "cat", "/data/a", "/data/b")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout == b"from-w1\nfrom-w2\n"
    assert hypr_home.out("volume", "ls", "-q").split() == ["data"]


def test_new_volume_on_a_populated_path_starts_with_the_images_files(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "-v", "etcvol:/etc", busybox, "sh", "-c",
                         "cat /etc/passwd | head -1; stat -c '%U %a' /etc/passwd; echo mine > /etc/extra")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout.decode().splitlines() == ["root:x:0:0:root:/root:/bin/sh", "root 644"]
    # the second VM sees the volume's content (with the new file), not a fresh copy of the image
    proc = hypr_home.run("run", "--rm", "-v", "etcvol:/etc", busybox, "cat", "/etc/extra")
    assert proc.stdout == b"mine\n", _err(proc)
    # with nocopy the volume stays empty
    proc = hypr_home.run("run", "--rm", "-v", "emptyvol:/etc:nocopy", busybox, "ls", "-A", "/etc")
    assert proc.returncode == 0 and proc.stdout == b"", _err(proc)


def test_read_only_volume_and_bind_refuse_writes_even_after_a_remount(hypr_home, busybox, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "host.txt").write_text("host\n")
    hypr_home.out("volume", "create", "rovol")
    script = (
        "cat /b/host.txt; "
        "touch /v/x 2>/dev/null && echo v-writable; "
        "touch /b/x 2>/dev/null && echo b-writable; "
        "mount -o remount,rw /v 2>/dev/null; mount -o remount,rw /b 2>/dev/null; "
        "touch /v/y 2>/dev/null && echo v-writable-after-remount; "
        "touch /b/y 2>/dev/null && echo b-writable-after-remount; "
        "echo done"
    )
    proc = hypr_home.run("run", "--rm", "-v", "rovol:/v:ro", "-v", f"{share}:/b:ro", busybox, "sh", "-c", script)
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout.decode().splitlines() == ["host", "done"]
    assert sorted(p.name for p in share.iterdir()) == ["host.txt"]


def test_bind_mount_is_live_both_ways_and_relative_paths_resolve_from_the_client(hypr_home, busybox, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("v1\n")
    # relative to the CLI's working directory, as Docker resolves ./site
    hypr_home.run("run", "-d", "--name", "web", "-v", "./site:/srv", busybox, "sleep", "600",
                  cwd=tmp_path, check=True)
    assert hypr_home.out("exec", "web", "cat", "/srv/index.html") == "v1\n"
    (site / "index.html").write_text("v2\n")
    (site / "new.txt").write_text("new\n")
    assert hypr_home.out("exec", "web", "cat", "/srv/index.html", "/srv/new.txt") == "v2\nnew\n"
    hypr_home.out("exec", "web", "sh", "-c", "echo guest > /srv/from-guest; chown 1234:5678 /srv/from-guest")
    written = site / "from-guest"
    assert written.read_text() == "guest\n"
    # ownership: security_model=passthrough as root (the guest's uid/gid), else QEMU's user
    st = written.stat()
    expected = (1234, 5678) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert (st.st_uid, st.st_gid) == expected
    mounts = json.loads(hypr_home.out("inspect", "web"))[0]["Mounts"]
    assert mounts == [{"Type": "bind", "Source": str(site), "Destination": "/srv", "Mode": "", "RW": True,
                       "Propagation": "rprivate"}]


def test_tmpfs_mount_with_size_and_mode(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "--tmpfs", "/scratch:size=2m,mode=1770", busybox, "sh", "-c",
                         "stat -c %a /scratch; df -k /scratch | tail -1 | awk '{print $2}'; "
                         "dd if=/dev/zero of=/scratch/f bs=1k count=4096 2>/dev/null || echo full")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout.decode().split() == ["1770", "2048", "full"]


def test_volume_in_use_is_not_removed_and_prune_keeps_used_volumes(hypr_home, busybox):
    hypr_home.out("volume", "create", "--label", "team=db", "used")
    hypr_home.out("volume", "create", "unused")
    hypr_home.out("run", "-d", "--name", "holder", "-v", "used:/data", busybox, "sleep", "600")
    proc = hypr_home.run("volume", "rm", "used")
    assert proc.returncode != 0 and "in use by running VM holder" in _err(proc)
    proc = hypr_home.run("volume", "rm", "-f", "used")
    assert proc.returncode != 0, "a running VM's volume is never removed"
    # a second running VM on the same volume: refused before it boots
    proc = hypr_home.run("run", "-d", "--name", "second", "-v", "used:/data", busybox, "true")
    assert proc.returncode != 0 and "mounted by running VM holder" in _err(proc)
    hypr_home.out("rm", "-f", "second")
    listed = [json.loads(line) for line in hypr_home.out("volume", "ls", "--format", "json").splitlines()]
    assert {v["Name"]: v["UsedBy"] for v in listed} == {"used": ["holder"], "unused": []}
    assert hypr_home.out("volume", "ls", "-q", "--filter", "label=team=db").split() == ["used"]
    out = hypr_home.out("system", "prune", "--volumes", "-f")
    assert "unused" in out and "Total reclaimed space" in out
    assert hypr_home.out("volume", "ls", "-q").split() == ["used"]
    assert (hypr_home.data / "volumes" / "used" / "disk.ext4").exists()
    assert not (hypr_home.data / "volumes" / "unused").exists()
    hypr_home.out("stop", "-t", "0", "holder")
    proc = hypr_home.run("volume", "rm", "used")
    assert proc.returncode != 0 and "in use by VM holder" in _err(proc)
    assert hypr_home.out("volume", "rm", "-f", "used").strip() == "used"
    assert not (hypr_home.data / "volumes" / "used").exists()


def test_system_df_figures_match_the_files(hypr_home, busybox):
    hypr_home.out("volume", "create", "--opt", "size=64m", "dfvol")
    hypr_home.out("run", "--name", "dfvm", "-v", "dfvol:/data", busybox, "sh", "-c",
                  "dd if=/dev/urandom of=/data/blob bs=1k count=3072 2>/dev/null; sync")
    report = json.loads(hypr_home.out("system", "df", "-v", "--format", "json"))
    disk = hypr_home.data / "volumes" / "dfvol" / "disk.ext4"
    allocated = disk.stat().st_blocks * 512
    [item] = report["volumes"]["items"]
    assert item["size"] == allocated and item["apparent_size"] == 64 << 20 == disk.stat().st_size
    assert allocated > 3 << 20
    assert report["volumes"]["reclaimable"] == 0      # the exited VM still uses it
    vm_dir = next((hypr_home.data / "vms").iterdir())
    layer = (vm_dir / "upper.ext4").stat().st_blocks * 512
    [vm] = report["vms"]["items"]
    assert vm["size"] >= layer and vm["state"] == "exited"
    assert report["vms"]["reclaimable"] == report["vms"]["size"]
    with sqlite3.connect(hypr_home.data / "hypr.db") as db:
        [(image_size,)] = db.execute("SELECT size FROM images").fetchall()
    assert report["images"]["items"][0]["size"] == image_size
    text = hypr_home.out("system", "df")
    assert "Local Volumes" in text and "allocated bytes" in text


def test_full_volume_gives_enospc_in_the_guest_only(hypr_home, busybox):
    hypr_home.out("volume", "create", "--opt", "size=16m", "small")
    proc = hypr_home.run("run", "--rm", "-v", "small:/data", busybox, "sh", "-c",
                         "dd if=/dev/zero of=/data/fill bs=1M count=64 2>&1 | grep -o 'No space left on device';"
                         " echo rootfs-ok > /root-still-writable && cat /root-still-writable")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout.decode().split("\n")[:2] == ["No space left on device", "rootfs-ok"]
    disk = hypr_home.data / "volumes" / "small" / "disk.ext4"
    assert disk.stat().st_size == 16 << 20


def test_as_many_mounts_as_the_device_plan_allows_and_one_more_is_refused(hypr_home, busybox, tmp_path):
    from hypr_engine.vmm import probe
    from hypr_engine.vmm.devices import MICROVM_ACPI_SLOTS, MICROVM_SLOTS

    slots = MICROVM_ACPI_SLOTS if probe.find_guest_artifacts().acpi else MICROVM_SLOTS
    free = slots - 4      # root, writable layer, serial, rng; no NIC with --network none
    share = tmp_path / "share"
    share.mkdir()
    args = ["--network", "none", "-v", f"{share}:/share"] + \
        [a for i in range(free - 1) for a in ("-v", f"v{i}:/m/{i}")]
    proc = hypr_home.run("run", "--name", "full", *args, busybox, "sh", "-c", "mount | grep -c ' /m/\\| /share '")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout == f"{free}\n".encode()
    before = sorted(hypr_home.out("volume", "ls", "-q").split())
    proc = hypr_home.run("run", "--name", "extra", *args, "-v", "onemore:/m/extra", busybox, "true")
    assert proc.returncode == 125
    assert "too many devices" in _err(proc) and "onemore" in _err(proc)
    # On the default network its NIC takes a slot: the same mounts are then one too many.
    proc = hypr_home.run("run", "--name", "nic", *args[2:], busybox, "true")
    assert proc.returncode == 125
    assert "too many devices" in _err(proc) and f"v{free - 2}" in _err(proc)
    # nothing half-created: no new VM, no new volume
    assert hypr_home.out("ps", "-a", "--format", "{{.Names}}").split() == ["full"]
    assert sorted(hypr_home.out("volume", "ls", "-q").split()) == before


def test_start_after_stop_remounts_and_inspect_shows_mounts(hypr_home, busybox):
    hypr_home.out("create", "--name", "again", "-v", "keep:/keep", "--tmpfs", "/t", busybox,
                  "sh", "-c", "echo run >> /keep/log; cat /keep/log")
    hypr_home.out("start", "again")
    hypr_home.out("wait", "again")
    hypr_home.out("start", "again")
    assert hypr_home.out("wait", "again").strip() == "0"
    assert hypr_home.out("logs", "again") == "run\nrun\nrun\n"
    mounts = json.loads(hypr_home.out("inspect", "again"))[0]["Mounts"]
    assert mounts[0] == {"Type": "volume", "Name": "keep",
                         "Source": str(hypr_home.data / "volumes" / "keep" / "disk.ext4"),
                         "Driver": "local", "Destination": "/keep", "Mode": "", "RW": True, "Propagation": ""}
    assert mounts[1]["Type"] == "tmpfs" and mounts[1]["Destination"] == "/t"


@pytest.mark.parametrize("args, message", [
    (["-v", "/no/such/dir/hypr-test:/x"], "bind source path does not exist"),
    (["-v", "vol:relative"], "must be an absolute path"),
    (["-v", "vol:/x:bogus"], "unknown option 'bogus'"),
    (["-v", "b@d:/x"], "invalid volume name"),
    (["--mount", "type=volume,source=v,target=/x,size=1"], "unknown option 'size'"),
    (["--tmpfs", "/x:size=lots"], "invalid tmpfs size"),
])
def test_bad_mount_input_is_a_clear_error_and_creates_nothing(hypr_home, busybox, args, message):
    proc = hypr_home.run("run", "--rm", *args, busybox, "true")
    assert proc.returncode == 125
    assert message in _err(proc)
    assert hypr_home.out("ps", "-aq") == ""
    assert hypr_home.out("volume", "ls", "-q") == ""
    proc = hypr_home.run("volume", "create", "--opt", "size=huge", "v1")
    assert proc.returncode == 125 and "invalid volume size" in _err(proc)
    assert hypr_home.out("volume", "ls", "-q") == ""
    assert not [p for p in (hypr_home.data / "volumes").glob("*")] if (hypr_home.data / "volumes").exists() else True


def test_anonymous_volumes_go_with_an_rm_vm_and_stay_for_prune_otherwise(hypr_home, busybox):
    proc = hypr_home.run("run", "--rm", "-v", "/scratch", busybox, "sh", "-c", "echo x > /scratch/f; cat /scratch/f")
    assert proc.stdout == b"x\n", _err(proc)
    assert hypr_home.out("volume", "ls", "-q") == ""
    assert not list((hypr_home.data / "volumes").iterdir())
    hypr_home.out("run", "--name", "keeper", "-v", "/scratch", busybox, "true")
    [anonymous] = hypr_home.out("volume", "ls", "-q").split()
    assert len(anonymous) == 64
    hypr_home.out("rm", "keeper")
    assert "Deleted Volumes:\n" + anonymous in hypr_home.out("volume", "prune", "-f")
    assert hypr_home.out("volume", "ls", "-q") == ""


def test_a_vm_that_cannot_be_created_leaves_no_volume_behind(hypr_home, busybox):
    hypr_home.out("create", "--name", "dup", busybox, "true")
    proc = hypr_home.run("create", "--name", "dup", "-v", "fresh:/x", "-v", "/anon", busybox, "true")
    assert proc.returncode == 125 and "already in use" in _err(proc)
    assert hypr_home.out("volume", "ls", "-q") == ""
    assert not list((hypr_home.data / "volumes").iterdir())


def test_a_vm_whose_supervisor_died_no_longer_holds_its_volume(hypr_home, busybox):
    import signal
    import time

    hypr_home.out("run", "-d", "--name", "crashed", "-v", "shared:/data", busybox, "sleep", "600")
    vm_dir = next((hypr_home.data / "vms").iterdir())
    supervisor = json.loads((vm_dir / "supervisor.json").read_text())["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)           # QEMU dies with it (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{supervisor}") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = hypr_home.run("run", "--rm", "-v", "shared:/data", busybox, "true")
    assert proc.returncode == 0, _err(proc)
    assert hypr_home.out("ps", "-a", "--format", "{{.Names}} {{.State}}").split() == ["crashed", "exited"]


def test_a_single_file_bind_mount_is_live_and_read_only_when_asked(hypr_home, busybox, tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("v1\n")
    (tmp_path / "sibling").write_text("not shared\n")
    log = tmp_path / "out.log"
    log.write_text("")
    hypr_home.run("run", "-d", "--name", "filer", "-v", "./app.conf:/etc/app.conf:ro",
                  "-v", f"{log}:/var/log/out.log", busybox, "sleep", "600", cwd=tmp_path, check=True)
    assert hypr_home.out("exec", "filer", "cat", "/etc/app.conf") == "v1\n"
    with open(conf, "r+") as f:   # in place, as Docker's file binds see (same inode)
        f.write("v2\n")
    assert hypr_home.out("exec", "filer", "cat", "/etc/app.conf") == "v2\n"
    proc = hypr_home.run("exec", "filer", "sh", "-c",
                         "echo no >> /etc/app.conf || echo refused; ls /etc/sibling 2>&1 | grep -c 'No such'")
    assert proc.stdout.decode().split() == ["refused", "1"], _err(proc)
    hypr_home.out("exec", "filer", "sh", "-c", "echo logged >> /var/log/out.log")
    assert log.read_text() == "logged\n"
    assert conf.read_text() == "v2\n"


def test_system_prune_asks_then_removes_stopped_vms_dangling_images_and_caches(hypr_home, busybox, tmp_path):
    import io
    import tarfile

    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    hypr_home.out("import", str(rootfs))              # untagged: dangling
    hypr_home.out("run", "--name", "stopped", busybox, "true")
    hypr_home.out("run", "-d", "--name", "running", busybox, "sleep", "600")
    hypr_home.out("volume", "create", "spare")
    proc = hypr_home.run("system", "prune", input=b"n\n")
    assert proc.returncode == 0 and "WARNING! This will remove:" in proc.stdout.decode()
    assert len(hypr_home.out("ps", "-aq").split()) == 2
    out = hypr_home.out("system", "prune", "-f")
    assert "Deleted VMs:" in out and "Deleted Images:" in out and "Total reclaimed space" in out
    assert "network" not in out.lower()               # no networks exist: nothing said about them
    assert hypr_home.out("ps", "-a", "--format", "{{.Names}}").split() == ["running"]
    assert hypr_home.out("images", "--format", "json").count("hypr/busybox") == 1
    assert len(hypr_home.out("images", "-q").split()) == 1
    assert hypr_home.out("volume", "ls", "-q").split() == ["spare"]   # volumes only with --volumes
    # the running VM's root filesystem is a cache entry in use: kept
    assert len(list((hypr_home.data / "rootfs").glob("*.squashfs"))) == 1
    hypr_home.out("rm", "-f", "running")
    out = hypr_home.out("system", "prune", "-a", "--volumes", "-f")
    assert "Deleted Volumes:\nspare" in out
    assert hypr_home.out("images", "-q") == "" and hypr_home.out("volume", "ls", "-q") == ""
    assert not list((hypr_home.data / "rootfs").glob("*.squashfs"))


def test_nginx_serves_a_read_only_bind_mount_and_a_volume_keeps_the_images_owners(hypr_home, tmp_path):
    """The issue's own examples on the multi-layer Debian image (tests/vm/test_real_images.py)."""
    import time

    from tests.vm.test_real_images import DEBIAN, _http_get, _load

    image = _load(hypr_home, "debian-nginx.tar", DEBIAN)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>from the host</h1>\n")
    hypr_home.run("run", "-d", "--name", "web", "-v", "./site:/usr/share/nginx/html:ro", "-v", "home:/home/appuser",
                  image, cwd=tmp_path, check=True)
    assert _http_get(hypr_home, "web", time.monotonic() + 60) == b"<h1>from the host</h1>\n"
    (site / "index.html").write_text("<h1>edited</h1>\n")
    assert _http_get(hypr_home, "web", time.monotonic() + 60) == b"<h1>edited</h1>\n"
    # the volume was filled from the image with its owners: appuser can write its home
    out = hypr_home.out("exec", "-u", "appuser", "web", "sh", "-c",
                        "stat -c '%U:%G' /home/appuser; touch /home/appuser/ok && echo writable")
    assert out.split() == ["appuser:appgroup", "writable"]
    hypr_home.out("rm", "-f", "web")


def test_volumes_binds_and_tmpfs_with_the_debian_fallback_kernel(hypr_home, busybox, debian, tmp_path):
    """Its ext4, 9p and tmpfs are modules the fallback initramfs loads (vmm/fallback.py)."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "h").write_text("host\n")
    proc = hypr_home.run("run", "--rm", "-v", "dvol:/etc", "-v", f"{share}:/share:ro", "--tmpfs", "/t", busybox,
                         "sh", "-c", "head -1 /etc/passwd; cat /share/h; touch /share/x 2>/dev/null || echo ro")
    assert proc.returncode == 0, _err(proc)
    assert proc.stdout.decode().split() == ["root:x:0:0:root:/root:/bin/sh", "host", "ro"]
