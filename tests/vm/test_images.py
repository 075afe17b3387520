"""Images through the CLI: load, import, run a multi-layer image, bad archives change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypr_engine.oci import writer as w

pytestmark = pytest.mark.vm

BUSYBOX = Path("/bin/busybox")


def _busybox_layer() -> bytes:
    return w.layer_tar([
        w.directory("bin"),
        w.file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755),
        w.symlink("bin/sh", "busybox"),
        w.directory("etc"),
        w.file("etc/gone", "deleted by a later layer\n"),
        w.directory("data"),
        w.file("data/old", "hidden by an opaque directory\n"),
        w.directory("tmp", mode=0o1777),
    ])


def _config(cmd: list[str]) -> dict:
    return {"architecture": "amd64", "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/bin", "LAYERED=yes"], "WorkingDir": "/data"}}


def _store_files(home) -> set[str]:
    root = home.data / "blobs"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_multi_layer_image_with_whiteouts_runs(hypr_home, tmp_path):
    layers = [
        _busybox_layer(),
        w.layer_tar([w.whiteout("etc/gone"), w.opaque("data"), w.file("data/new", "from layer 2\n"),
                     w.hardlink("data/link", "bin/busybox")]),
        w.layer_tar([w.file("etc/motd", "layer three\n", mode=0o600, uid=1000, gid=1000)]),
    ]
    archive = tmp_path / "layered.tar"
    w.write_docker_archive(archive, layers, _config(["sh", "-c", "ls /data; echo; ls /etc; echo $LAYERED; pwd"]),
                           repo_tags=["layered:v1"])
    assert "Loaded image: layered:v1" in hypr_home.out("load", "-i", str(archive))
    proc = hypr_home.run("run", "--rm", "layered:v1")
    assert proc.returncode == 0, proc.stderr
    data_dir, rest = proc.stdout.decode().split("\n\n")
    assert data_dir.split() == ["link", "new"]  # data/old hidden by the opaque directory
    lines = rest.split()
    assert "motd" in lines and "gone" not in lines  # etc/gone whited out
    assert lines[-2:] == ["yes", "/data"]
    stat = hypr_home.run("run", "--rm", "layered:v1", "sh", "-c", "stat -c '%a %u %g' /etc/motd; stat -c %h /data/link")
    assert stat.stdout.decode().split("\n")[:2] == ["600 1000 1000", "2"]  # the hard link survived


def test_oci_layout_and_import(hypr_home, tmp_path):
    layout = tmp_path / "layout"
    w.write_oci_layout(layout, [_busybox_layer()], _config(["sh", "-c", "echo from oci"]), ref_name="v2",
                       image_name="docker.io/library/ocitest:v2")
    hypr_home.run("load", "-i", str(layout), check=True)
    assert hypr_home.run("run", "--rm", "ocitest:v2").stdout == b"from oci\n"
    images = [json.loads(line) for line in hypr_home.out("images", "--format", "json").splitlines()]
    assert any("ocitest:v2" in img["Tags"] for img in images)


def test_corrupt_and_truncated_archives_change_nothing(hypr_home, tmp_path):
    good = tmp_path / "good.tar"
    w.write_docker_archive(good, [_busybox_layer()], _config(["true"]), repo_tags=["good:1"])
    data = good.read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.tar"
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF  # somewhere inside the layer
    corrupt.write_bytes(bytes(flipped))
    notatar = tmp_path / "notatar.tar"
    notatar.write_text("hello")
    for bad in (truncated, corrupt, notatar, tmp_path / "missing.tar"):
        proc = hypr_home.run("load", "-i", str(bad))
        assert proc.returncode == 125, bad
        assert proc.stderr.decode().startswith("hypr: error: ") and proc.stderr.count(b"\n") == 1, proc.stderr
        assert _store_files(hypr_home) == set()
        assert hypr_home.out("images", "-q") == ""


@pytest.mark.parametrize("entries, message", [
    ([w.file("../escape", "x")], ".."),
    ([w.symlink("evil", "../../../etc"), w.file("evil/passwd", "x")], "symlink"),
    ([w.hardlink("link", "../../etc/shadow")], ""),
])
def test_layers_that_escape_the_root_are_refused(hypr_home, tmp_path, entries, message):
    archive = tmp_path / "evil.tar"
    w.write_docker_archive(archive, [_busybox_layer(), w.layer_tar(entries)], _config(["true"]), repo_tags=["evil:1"])
    loaded = hypr_home.run("load", "-i", str(archive))
    if loaded.returncode == 0:
        # Refused at the latest when the root filesystem is built, before any VM exists.
        proc = hypr_home.run("run", "--rm", "evil:1")
    else:
        proc = loaded
    assert proc.returncode == 125
    assert message in proc.stderr.decode()
    assert proc.stderr.count(b"\n") == 1, proc.stderr
    assert hypr_home.out("ps", "-aq") == ""
    rootfs = hypr_home.data / "rootfs"
    assert not rootfs.exists() or not [p for p in rootfs.iterdir() if p.is_file()]


def test_rmi_reclaims_blobs(hypr_home, busybox):
    assert _store_files(hypr_home)
    hypr_home.run("run", "--rm", busybox, "true", check=True)
    out = hypr_home.out("rmi", busybox)
    assert "Deleted: sha256:" in out
    assert _store_files(hypr_home) == set()
    assert hypr_home.out("images", "-q") == ""
    missing = hypr_home.run("rmi", busybox)
    assert missing.returncode == 125 and b"unable to find image" in missing.stderr


def test_a_running_vms_image_and_rootfs_are_never_reclaimed(hypr_home, busybox):
    """rmi refuses without -f; with -f the image only loses its tag; prune -a keeps it; the VM
    keeps working; once the VM is gone, prune takes blobs and root filesystem."""
    hypr_home.run("run", "-d", "--name", "busy", busybox, "sleep", "600", check=True)
    blobs, rootfs = _store_files(hypr_home), sorted((hypr_home.data / "rootfs").glob("*.squashfs"))
    assert blobs and len(rootfs) == 1
    refused = hypr_home.run("rmi", busybox)
    assert refused.returncode == 125 and b"it is used by a VM (busy)" in refused.stderr
    assert hypr_home.out("rmi", "-f", busybox).splitlines() == ["Untagged: hypr/busybox:latest"]
    assert "Total reclaimed space: 0B" in hypr_home.out("image", "prune", "-a", "-f")
    assert _store_files(hypr_home) == blobs and sorted((hypr_home.data / "rootfs").glob("*.squashfs")) == rootfs
    assert hypr_home.run("exec", "busy", "cat", "/bin/busybox").returncode == 0
    hypr_home.run("restart", "-t", "0", "busy", check=True)  # needs the image and its rootfs again
    assert hypr_home.out("exec", "busy", "echo", "back") == "back\n"
    hypr_home.run("rm", "-f", "busy", check=True)
    assert "deleted: sha256:" in hypr_home.out("image", "prune", "-f")
    assert _store_files(hypr_home) == set() and not list((hypr_home.data / "rootfs").glob("*.squashfs"))
